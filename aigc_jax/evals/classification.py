"""`classification`: accuracy, balanced accuracy, log loss and the confusion matrix of held-out examples.

  config.evals.kind = evaluator('classification', every=250, num=512, class_names=('none', 'nodule', 'mass'))

Needs a task with `predict(params, batch)` → class logits and `config.task.label` / `config.task.num_classes`
(the classification task). The examples are the run's held-out ones (`pipeline.monitor_examples`: phantom seed
+ 1, or a prepared dataset's held-out split), read once. Balanced accuracy is the mean recall over the classes
present, so a model that always answers the majority class scores 1 / (classes present), not the majority's
share. Writes `confusion_<step>.png` (rows: true class, columns: predicted; shade: share of the row) and
`confusion_<step>.txt` (counts).
"""

import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline

CELL = 24  # pixels per confusion-matrix cell in the image


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted], [K, K] int64."""
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
  return out


def scores(confusion: np.ndarray) -> dict[str, float]:
  """accuracy, balanced accuracy (mean recall over classes with examples) and each such class's recall."""
  support = confusion.sum(1)
  recall = np.diag(confusion) / np.maximum(support, 1)
  out = {'accuracy': float(np.trace(confusion) / max(confusion.sum(), 1)),
         'balanced_accuracy': float(np.mean(recall[support > 0])) if np.any(support) else 0.0}
  out.update({f'recall_{k}': float(recall[k]) for k in range(len(support)) if support[k]})
  return out


def confusion_image(confusion: np.ndarray) -> np.ndarray:
  """uint8 [K*CELL, K*CELL, 3]: white (0 % of the row) to dark blue (100 %), 1-pixel grey grid lines."""
  share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  rgb = np.stack([1.0 - 0.9 * share, 1.0 - 0.7 * share, 1.0 - 0.3 * share], -1)
  img = np.kron(rgb, np.ones((CELL, CELL, 1)))
  img[::CELL, :], img[:, ::CELL] = 0.6, 0.6
  return (img * 255).round().astype(np.uint8)


def confusion_text(confusion: np.ndarray, names: list[str]) -> str:
  corner = 'true \\ predicted'
  first, width = max(len(corner), *(len(n) for n in names)) + 1, max(8, *(len(n) for n in names)) + 1
  rows = [corner.ljust(first) + ''.join(n.rjust(width) for n in names)]
  rows += [n.ljust(first) + ''.join(str(v).rjust(width) for v in row) for n, row in zip(names, confusion)]
  return '\n'.join(rows)


class Classification(evaluation.Evaluator):

  fields = {'num': 512, 'batch': 256, 'class_names': ()}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('predict')
    t = self.config.task
    if 'label' not in t or 'num_classes' not in t:
      raise ValueError(f'a "classification" evaluator (config.evals.{self.name}) needs a task with '
                       'config.task.label and config.task.num_classes (the classification task).')
    self.label, self.num_classes = t.label, int(t.num_classes)
    names = list(self.cfg.class_names) or [str(k) for k in range(self.num_classes)]
    if len(names) != self.num_classes:
      raise ValueError(f'config.evals.{self.name}.class_names has {len(names)} names for '
                       f'{self.num_classes} classes (config.task.num_classes).')
    self.names = names
    self._fn = jax.jit(lambda p, x: self.task.predict(p, {'image': x}))

  @functools.cached_property
  def examples(self) -> tuple[np.ndarray, np.ndarray]:
    batch, source = pipeline.monitor_examples(self.config.data, self.cfg.num)
    reporting.log(f'{self.name}: classifies {len(batch["image"])} examples of {source}')
    return batch['image'], batch[self.label]

  def run(self, params, rng, ctx):
    del rng
    images, labels = self.examples
    n = len(images)
    # Fixed-size batches (the last one padded) so predict compiles once.
    logits = evaluation.in_batches(lambda x: ctx.gather(self._fn(params, x)), images, min(int(self.cfg.batch), n))
    if np.any(labels < 0) or np.any(labels >= self.num_classes):
      raise ValueError(f'held-out {self.label!r} labels lie outside 0…{self.num_classes - 1} '
                       '(config.task.num_classes).')
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    confusion = confusion_matrix(labels, np.argmax(logits, -1), self.num_classes)
    out = scores(confusion)
    out['log_loss'] = float(-np.mean(logp[np.arange(n), labels]))
    out['majority_share'] = float(confusion.sum(1).max() / n)  # the accuracy of always answering the commonest
    return evaluation.Output(scalars=out, images={'confusion': confusion_image(confusion)},
                             texts={'confusion': confusion_text(confusion, self.names)})

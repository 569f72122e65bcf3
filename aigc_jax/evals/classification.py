"""`classification`: accuracy, balanced accuracy, log loss, the confusion matrix and the figures of a diagnostic
paper (discrimination of "abnormal", sensitivity at fixed specificity, calibration) on held-out examples.

  config.evals.kind = evaluator('classification', every=250, num=512, class_names=('none', 'nodule', 'mass'),
                                specificities=(0.9, 0.95), bins=10)

Needs a task with `predict(params, batch)` → class logits and `config.task.label` / `config.task.num_classes`
(the classification task). The examples are the run's held-out ones (`pipeline.monitor_examples`: phantom seed
+ 1, or a prepared dataset's held-out split), read once. Balanced accuracy is the mean recall over the classes
present, so a model that always answers the majority class scores 1 / (classes present), not the majority's
share. Writes `confusion_<step>.png` (rows: true class, columns: predicted; shade: share of the row) and
`confusion_<step>.txt` (counts).

The diagnostic figures (`diagnostic_scores`): class 0 is "normal" (no finding) and every other class
"abnormal", scored by 1 − p(class 0): its AUROC, AUPRC (average precision) and prevalence (the AUPRC of a
model that knows nothing), and its sensitivity at each of `specificities`; each class's one-vs-rest AUROC;
the expected calibration error of the top-label confidence. Writes `reliability_<step>.png` (observed
accuracy per bin of top-label confidence; `risk.reliability_image`) and `diagnosis_<step>.txt` (the operating
points and the calibration bins).
"""

import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline
from aigc_jax.evals import multilabel
from aigc_jax.evals import risk

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


def top_label(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(whether argmax is the label [N] as 0/1 float, the top-label confidence max_k probs [N])."""
  return (np.argmax(probs, -1) == labels).astype(np.float64), np.max(probs, -1)


def operating_points(y: np.ndarray, s: np.ndarray, specificities) -> list[tuple[float, float, float]]:
  """Per target specificity t, the point of the empirical ROC curve of scores `s` [N] for the 0/1 outcome
  `y` [N] with the highest sensitivity among those of specificity ≥ t: (sensitivity, its specificity, its
  threshold: s ≥ threshold calls a case positive; inf: none is). The threshold is chosen on these very scores,
  so this is the ROC curve's operating point, not the sensitivity a threshold fixed beforehand would reach on
  new cases (which scatters around it). nan without both outcomes."""
  y, s = np.asarray(y).astype(bool), np.asarray(s, np.float64)
  pos, neg = int(y.sum()), int((~y).sum())
  if not pos or not neg:
    return [(float('nan'),) * 3 for _ in specificities]
  order = np.argsort(-s, kind='mergesort')
  s, y = s[order], y[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # tied scores are one threshold: one ROC point
  tp = np.cumsum(y)[last]
  sens = np.r_[0.0, tp / pos]
  spec = np.r_[1.0, 1.0 - (last + 1 - tp) / neg]
  thresholds = np.r_[np.inf, s[last]]
  out = []
  for t in specificities:
    # Specificity falls and sensitivity rises along the points: the last one still at ≥ t is the best.
    # The slack keeps 1 − 1/10 from missing a target of 0.9 by rounding.
    k = int(np.flatnonzero(spec >= float(t) - 1e-12)[-1])
    out.append((float(sens[k]), float(spec[k]), float(thresholds[k])))
  return out


def diagnostic_scores(labels: np.ndarray, probs: np.ndarray, specificities=(0.9, 0.95), bins: int = 10
                      ) -> dict[str, float]:
  """What a diagnostic paper reports of class probabilities `probs` [N, K] against integer `labels` [N].

  Class 0 is "normal", every other class "abnormal", scored by 1 − probs[:, 0]. Returns
    abnormal_auroc, abnormal_auprc (average precision), abnormal_prevalence (share of abnormal cases: the
      AUPRC of a model that knows nothing);
    sensitivity_at_specificity_<t> for each t of `specificities` (`operating_points`: the empirical ROC
      curve's point, its threshold chosen on these same cases);
    auroc_ovr_<k>: class k against the rest by probs[:, k], for each class with cases and non-cases;
      auroc_ovr_macro, their mean;
    top_label_ece: expected calibration error of the confidence max_k probs against whether argmax is right
      (`bins` equal-width bins of [0, 1]: |accuracy − mean confidence| weighted by the bin's share).
  The abnormal scores are nan where the labels lack normal or abnormal cases.
  """
  labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
  abnormal, score = labels != 0, 1.0 - probs[:, 0]
  out = {'abnormal_auroc': multilabel.auroc(abnormal, score),
         'abnormal_auprc': risk.average_precision(abnormal, score),
         'abnormal_prevalence': float(abnormal.mean())}
  for t, (sens, _, _) in zip(specificities, operating_points(abnormal, score, specificities)):
    out[f'sensitivity_at_specificity_{float(t):g}'] = sens
  ovr = {k: multilabel.auroc(labels == k, probs[:, k]) for k in range(probs.shape[1])
         if 0 < np.sum(labels == k) < len(labels)}
  out.update({f'auroc_ovr_{k}': v for k, v in ovr.items()})
  if ovr:
    out['auroc_ovr_macro'] = float(np.mean(list(ovr.values())))
  correct, confidence = top_label(labels, probs)
  out['top_label_ece'] = risk.expected_calibration_error(correct, confidence, bins)
  return out


def diagnosis_text(labels: np.ndarray, probs: np.ndarray, specificities, bins: int) -> str:
  """The abnormal decision's operating points and the top-label calibration bins, as a table."""
  abnormal, score = np.asarray(labels) != 0, 1.0 - probs[:, 0]
  rows = [f'abnormal = any class but 0, scored by 1 - p(class 0): {int(abnormal.sum())} abnormal, '
          f'{int((~abnormal).sum())} normal',
          f'{"target specificity":>20}{"specificity":>13}{"sensitivity":>13}{"threshold":>11}']
  for t, (sens, spec, thr) in zip(specificities, operating_points(abnormal, score, specificities)):
    rows.append(f'{float(t):>20.3f}{spec:>13.3f}{sens:>13.3f}{thr:>11.4f}')
  correct, confidence = top_label(labels, probs)
  b = risk.calibration_bins(correct, confidence, bins)
  rows += ['', f'{"confidence":>16}{"examples":>10}{"mean confidence":>17}{"accuracy":>10}']
  for k in range(bins):
    rows.append(f'{f"{k / bins:.2f}-{(k + 1) / bins:.2f}":>16}{int(b["count"][k]):>10}'
                f'{b["predicted"][k]:>17.3f}{b["observed"][k]:>10.3f}')
  return '\n'.join(rows)


class Classification(evaluation.Evaluator):

  fields = {'num': 512, 'batch': 256, 'class_names': (), 'specificities': (0.9, 0.95), 'bins': 10}

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
    self.specificities = tuple(float(t) for t in self.cfg.specificities)
    if not all(0.0 <= t <= 1.0 for t in self.specificities):
      raise ValueError(f'config.evals.{self.name}.specificities={self.specificities}: each target specificity '
                       'must lie in [0, 1], e.g. (0.9, 0.95).')
    self.bins = int(self.cfg.bins)
    if self.bins < 1:
      raise ValueError(f'config.evals.{self.name}.bins={self.cfg.bins}: the calibration needs at least 1 bin '
                       '(10 is usual).')
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
    probs = np.exp(logp)
    out.update(diagnostic_scores(labels, probs, self.specificities, self.bins))
    correct, confidence = top_label(labels, probs)
    images = {'confusion': confusion_image(confusion),
              'reliability': risk.reliability_image(correct, confidence, self.bins)}
    texts = {'confusion': confusion_text(confusion, self.names),
             'diagnosis': diagnosis_text(labels, probs, self.specificities, self.bins)}
    return evaluation.Output(scalars=out, images=images, texts=texts)

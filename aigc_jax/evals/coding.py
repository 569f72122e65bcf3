"""The `coding` evaluator: multi-label coding scores of a text classifier on a held-out split, with
thresholds tuned on the validation split (evals/multilabel.py).

  config.evals.test = evaluator('coding', every=…, split='test', tune_on='validation', batch=32)

Scores: macro/micro AUROC, precision@1 and @3, micro-F1 / macro-F1 / F1 of macro means at the global
threshold tuned on `tune_on`, macro-F1 with per-label thresholds, micro-F1 at 0.5; a per-label table as text.
With split == tune_on (monitoring while training) the thresholds are tuned on the scored data themselves:
the F1s are then optimistic, and the scalars say so by their names ('…_tuned_here').
"""

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import text as text_data
from aigc_jax.evals import multilabel

F1_KEYS = ('micro_f1', 'macro_f1', 'macro_f1_of_means', 'macro_f1_label_thresholds', 'micro_precision',
           'micro_recall', 'threshold')


class Coding(evaluation.Evaluator):

  fields = {'split': 'test', 'tune_on': 'validation', 'batch': 32}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('probabilities')
    if not isinstance(self.data, text_data.LabelledText):
      raise ValueError(f'config.evals.{self.name} (type "coding") scores labelled text and needs '
                       f'config.data.name="text_labels", not {self.config.data.name!r}.')
    self._predict = jax.jit(self.task.probabilities)   # σ(z) under the BCE, softmax(z) under the softmax loss
    self._announced = False

  def probabilities(self, params, split: str, ctx) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N, K], probabilities [N, K]) of every document of `split`."""
    rows = self.data.rows(split)
    n, b = len(rows['tokens']), min(int(self.cfg.batch), len(rows['tokens']))
    out = []
    for i in range(0, n, b):
      batch = {k: v[i:i + b] for k, v in rows.items() if k != 'labels'}
      short = b - len(batch['tokens'])
      if short:  # one compile: pad the last batch
        batch = {k: np.concatenate([v, np.zeros((short,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
      out.append(np.asarray(ctx.gather(self._predict(params, batch)))[:b - short])
    return rows['labels'], np.concatenate(out).astype(np.float64)

  def run(self, params, rng, ctx):
    del rng
    if not self._announced:
      rows = self.data.rows(self.cfg.split)
      reporting.log(f'{self.name}: codes {len(rows["tokens"])} {self.cfg.split} documents, '
                    f'{rows["labels"].shape[1]} labels; thresholds tuned on {self.cfg.tune_on}')
      self._announced = True
    y, p = self.probabilities(params, self.cfg.split, ctx)
    y_tune, p_tune = (y, p) if self.cfg.tune_on == self.cfg.split else \
        self.probabilities(params, self.cfg.tune_on, ctx)
    scores = multilabel.report(y_tune, p_tune, y, p)
    if self.cfg.tune_on == self.cfg.split:
      scores = {(f'{k}_tuned_here' if k in F1_KEYS else k): v for k, v in scores.items()}
    table = multilabel.label_table(self.data.label_names, y, p,
                                   scores.get('threshold', scores.get('threshold_tuned_here')))
    return evaluation.Output(scalars=scores, texts={'labels': table})

"""The `risk` evaluator: what a clinical risk-prediction paper reports, per outcome, on a held-out split.

  config.evals.test = evaluator('risk', every=…, split='test', bins=10)

Per label, over the patients whose label is known (the mask): AUROC, AUPRC (average precision, the step
interpolation scikit-learn uses), Brier score, log loss, expected calibration error (ECE: equal-width bins of
the predicted risk, |observed rate − mean predicted| weighted by the bin's share) and the prevalence, which is
the AUPRC of a model that knows nothing. Writes a reliability plot per label (`reliability_<label>_<step>.png`:
bars are the observed rate in each bin of predicted risk, the grey diagonal is perfect calibration, the bar's
shade is the bin's share of patients) and the bins as text. Checked against scikit-learn in tests/test_risk.py.
"""

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.evals import multilabel

PLOT = 160   # reliability plot side, pixels


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
  """Σ_n (R_n − R_{n−1}) P_n over the distinct thresholds, highest first (scikit-learn's definition)."""
  y = np.asarray(y).astype(bool)
  if not y.any():
    return float('nan')
  order = np.argsort(-np.asarray(p), kind='mergesort')
  s, y = np.asarray(p)[order], y[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # the last index of each run of tied scores
  tp = np.cumsum(y)[last]
  precision, recall = tp / (last + 1), tp / y.sum()
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int) -> dict[str, np.ndarray]:
  """Equal-width bins of predicted risk over [0, 1]: count, mean predicted and observed rate per bin."""
  idx = np.clip((np.asarray(p) * bins).astype(np.int64), 0, bins - 1)
  count = np.bincount(idx, minlength=bins).astype(np.float64)
  mean_p = np.bincount(idx, weights=p, minlength=bins) / np.maximum(count, 1)
  rate = np.bincount(idx, weights=y.astype(np.float64), minlength=bins) / np.maximum(count, 1)
  return {'count': count, 'predicted': mean_p, 'observed': rate}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
  b = calibration_bins(y, p, bins)
  return float(np.sum(b['count'] / b['count'].sum() * np.abs(b['observed'] - b['predicted'])))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
  """Mean −[y log p + (1 − y) log(1 − p)], p clipped to [1e-7, 1 − 1e-7]."""
  y, p = np.asarray(y, np.float64), np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def scores(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
  """The scores of probabilities `p` [N] of one binary outcome `y` [N] (0/1)."""
  y, p = np.asarray(y, np.float64), np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
  return {'auroc': multilabel.auroc(y, p), 'auprc': average_precision(y, p),
          'brier': float(np.mean((p - y) ** 2)),
          'log_loss': log_loss(y, p),
          'ece': expected_calibration_error(y, p, bins), 'prevalence': float(y.mean()), 'patients': float(len(y))}


def report(labels: np.ndarray, mask: np.ndarray, probs: np.ndarray, names, bins: int = 10
           ) -> dict[str, float]:
  """`scores` of every label [N, K] over its known rows, as {'<label>_<score>': value}."""
  out = {}
  for k, name in enumerate(names):
    known = mask[:, k] > 0
    out.update({f'{name}_{s}': v for s, v in scores(labels[known, k], probs[known, k], bins).items()})
  return out


def reliability_image(y: np.ndarray, p: np.ndarray, bins: int) -> np.ndarray:
  """uint8 [PLOT, PLOT, 3]: see the module doc."""
  b = calibration_bins(y, p, bins)
  img = np.ones((PLOT, PLOT, 3))
  share = b['count'] / max(b['count'].sum(), 1)
  width = PLOT // bins
  for k in range(bins):
    if b['count'][k]:
      top = PLOT - int(round(b['observed'][k] * (PLOT - 1))) - 1
      shade = 0.35 + 0.65 * min(1.0, share[k] / max(share.max(), 1e-9))
      img[top:, k * width + 1:(k + 1) * width - 1] = (1 - 0.9 * shade, 1 - 0.6 * shade, 1 - 0.2 * shade)
  diag = np.arange(PLOT)
  img[PLOT - 1 - diag, diag] = 0.4
  img[-1, :], img[:, 0] = 0.0, 0.0
  return (img * 255).round().astype(np.uint8)


def bins_text(y: np.ndarray, p: np.ndarray, bins: int) -> str:
  b = calibration_bins(y, p, bins)
  rows = [f'{"predicted risk":>16}{"patients":>10}{"mean predicted":>16}{"observed":>10}']
  for k in range(bins):
    rows.append(f'{f"{k / bins:.1f}–{(k + 1) / bins:.1f}":>16}{int(b["count"][k]):>10}'
                f'{b["predicted"][k]:>16.3f}{b["observed"][k]:>10.3f}')
  return '\n'.join(rows)


class Risk(evaluation.Evaluator):

  fields = {'split': 'test', 'bins': 10, 'batch': 256}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('predict')
    if not hasattr(self.data, 'rows') or not hasattr(self.data, 'label_names'):
      raise ValueError(f'config.evals.{self.name} (type "risk") scores labelled patients and needs '
                       f'config.data.name="tabular", not {self.config.data.name!r}.')
    self._predict = jax.jit(lambda params, x: jax.nn.sigmoid(self.task.predict(params, {'features': x})))
    self._announced = False

  def run(self, params, rng, ctx):
    del rng
    rows = self.data.rows(self.cfg.split)
    if not self._announced:
      reporting.log(f'{self.name}: scores {len(rows["features"])} {self.cfg.split} patients of '
                    f'{self.config.data.cohort}, outcomes {", ".join(self.data.label_names)}')
      self._announced = True
    n = len(rows['features'])
    p = evaluation.in_batches(lambda x: ctx.gather(self._predict(params, x)), rows['features'],
                              min(int(self.cfg.batch), n))
    bins, names = int(self.cfg.bins), self.data.label_names
    y, mask = rows['labels'], rows['label_mask']
    images, texts = {}, {}
    for k, name in enumerate(names):
      known = mask[:, k] > 0
      images[f'reliability_{name}'] = reliability_image(y[known, k], p[known, k], bins)
      texts[f'calibration_{name}'] = bins_text(y[known, k], p[known, k], bins)
    return evaluation.Output(scalars=report(y, mask, p, names, bins), images=images, texts=texts)

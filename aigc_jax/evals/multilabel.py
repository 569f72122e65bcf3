"""Multi-label classification metrics as the automatic-coding literature reports them, in numpy (checked
against scikit-learn in tests/test_coding.py), and the report the `coding` evaluator and the baselines share.

F1 comes in the variants Edin et al. (2023, "Automated medical coding on MIMIC-III and MIMIC-IV") show were
mixed up in earlier papers: micro-F1 (pooled over every label decision), macro-F1 (the mean of the per-label
F1s; a label never present and never predicted scores 0, as scikit-learn's zero_division=0), and the F1 of
the macro-averaged precision and recall, which is not the same number. Thresholds are chosen on validation
data only: one global threshold that maximizes micro-F1 there, and one per label that maximizes its F1.
"""

import numpy as np


def _counts(y: np.ndarray, pred: np.ndarray):
  y, pred = y.astype(bool), pred.astype(bool)
  return (y & pred).sum(0).astype(np.float64), (~y & pred).sum(0).astype(np.float64), \
      (y & ~pred).sum(0).astype(np.float64)


def _div(a, b):
  return np.divide(a, b, out=np.zeros_like(np.asarray(a, np.float64)), where=np.asarray(b) > 0)


def f1_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
  """Micro and macro precision/recall/F1 of 0/1 predictions [N, K] against 0/1 labels [N, K]."""
  tp, fp, fn = _counts(y, pred)
  micro_p, micro_r = _div(tp.sum(), tp.sum() + fp.sum()), _div(tp.sum(), tp.sum() + fn.sum())
  per_p, per_r = _div(tp, tp + fp), _div(tp, tp + fn)
  per_f1 = _div(2 * tp, 2 * tp + fp + fn)
  macro_p, macro_r = per_p.mean(), per_r.mean()
  return {'micro_precision': float(micro_p), 'micro_recall': float(micro_r),
          'micro_f1': float(_div(2 * micro_p * micro_r, micro_p + micro_r)),
          'macro_f1': float(per_f1.mean()),
          'macro_f1_of_means': float(_div(2 * macro_p * macro_r, macro_p + macro_r))}


def per_label_f1(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
  tp, fp, fn = _counts(y, pred)
  return _div(2 * tp, 2 * tp + fp + fn)


def precision_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
  """Mean over documents of the share of true labels among the k highest-scored."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return float(np.take_along_axis(y, top, axis=1).sum(1).mean() / k)


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve of one binary problem (Mann–Whitney, ties counted half); nan without both
  classes."""
  y = np.asarray(y).astype(bool)
  pos, neg = int(y.sum()), int((~y).sum())
  if not pos or not neg:
    return float('nan')
  order = np.argsort(scores, kind='mergesort')
  s = np.asarray(scores)[order]
  ranks = np.empty(len(s), np.float64)
  i = 0
  while i < len(s):  # average ranks over ties
    j = i
    while j + 1 < len(s) and s[j + 1] == s[i]:
      j += 1
    ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
    i = j + 1
  return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def per_label_auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
  return np.array([auroc(y[:, k], scores[:, k]) for k in range(y.shape[1])])


def best_global_threshold(y: np.ndarray, probs: np.ndarray) -> float:
  """The threshold in 0.01…0.99 that maximizes micro-F1 of `probs` against `y` (validation data)."""
  grid = np.linspace(0.01, 0.99, 99)
  return float(grid[int(np.argmax([f1_scores(y, probs >= t)['micro_f1'] for t in grid]))])


def best_label_thresholds(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """Per label, the threshold in 0.01…0.99 that maximizes that label's F1 (validation data); 0.5 where the
  label has no positive there."""
  grid = np.linspace(0.01, 0.99, 99)
  f1 = np.stack([per_label_f1(y, probs >= t) for t in grid])   # [thresholds, K]
  out = grid[np.argmax(f1, axis=0)]
  return np.where(y.sum(0) > 0, out, 0.5)


def report(y_tune: np.ndarray, p_tune: np.ndarray, y: np.ndarray, p: np.ndarray, ks=(1, 3)
           ) -> dict[str, float]:
  """The coding scores of probabilities `p` [N, K] against labels `y`, with thresholds tuned on
  (`y_tune`, `p_tune`) — the validation split, never the scored one."""
  aucs = per_label_auroc(y, p)
  out = {'auroc_macro': float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float('nan'),
         'auroc_micro': auroc(y.ravel(), p.ravel()),
         'labels_scored': float(np.isfinite(aucs).sum())}
  for k in ks:
    out[f'precision_at_{k}'] = precision_at_k(y, p, k)
  t = best_global_threshold(y_tune, p_tune)
  out.update({k: v for k, v in f1_scores(y, p >= t).items()}, threshold=t)
  out['macro_f1_label_thresholds'] = f1_scores(y, p >= best_label_thresholds(y_tune, p_tune)[None])['macro_f1']
  out['micro_f1_at_0.5'] = f1_scores(y, p >= 0.5)['micro_f1']
  return out


def label_table(names, y: np.ndarray, p: np.ndarray, threshold: float) -> str:
  """Per label: training-free support in the scored split, AUROC and F1 at `threshold`, as text."""
  aucs, f1 = per_label_auroc(y, p), per_label_f1(y, p >= threshold)
  width = max(len(n) for n in names) + 2
  rows = [f'{"label".ljust(width)}{"support":>8}{"AUROC":>8}{"F1":>8}']
  for k in np.argsort(-y.sum(0), kind='stable'):
    rows.append(f'{names[k].ljust(width)}{int(y[:, k].sum()):>8}{aucs[k]:>8.3f}{f1[k]:>8.3f}')
  return '\n'.join(rows)

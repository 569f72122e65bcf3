"""Classical peers of the risk model on exactly its split, encoding and metrics (evals/risk.py): logistic
regression on the same standardized features, and gradient boosting (scikit-learn's histogram GBM, which
handles missing values itself, so it gets the raw columns). Each outcome gets its own model, fitted on the
training patients whose outcome is known; hyperparameters are chosen by log loss on the validation split
(never on test)."""

import itertools

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from aigc_jax.evals import risk

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
GBM_GRID = {'learning_rate': (0.03, 0.1), 'max_leaf_nodes': (7, 31), 'max_iter': (100, 300)}


def fit_and_score(make, grid: list[dict], x: dict[str, np.ndarray], rows: dict[str, dict], names, bins: int = 10
                  ) -> tuple[dict[str, float], list[dict]]:
  """Per outcome: fit `make(**params)` for each params in `grid` on the known training rows, keep the one with
  the lowest validation log loss, predict test. Returns (test scores as risk.report gives them, the chosen
  params per outcome)."""
  probs, chosen = np.zeros(rows['test']['labels'].shape), []
  for k in range(len(names)):
    known = {s: rows[s]['label_mask'][:, k] > 0 for s in rows}
    y = {s: rows[s]['labels'][known[s], k] for s in rows}
    best = None
    for params in grid:
      model = make(**params).fit(x['train'][known['train']], y['train'])
      loss = risk.log_loss(y['validation'], model.predict_proba(x['validation'][known['validation']])[:, 1])
      if best is None or loss < best[0]:
        best = (loss, params, model)
    chosen.append(best[1])
    probs[:, k] = best[2].predict_proba(x['test'])[:, 1]
  return risk.report(rows['test']['labels'], rows['test']['label_mask'], probs, names, bins), chosen


def raw_features(part, categories: dict[str, tuple[str, ...]]) -> np.ndarray:
  """The cohort's columns as they are (nan kept), each category as its index among the training split's
  `categories` (nan if unseen there): what the GBM takes."""
  cols = [part.numeric[c] for c in part.numeric]
  for c, known in categories.items():
    index = {k: float(i) for i, k in enumerate(known)}
    cols.append(np.array([index.get(v, np.nan) for v in part.categorical[c]]))
  return np.stack(cols, 1)


def run(data, seed: int = 0) -> dict[str, dict]:
  """{'logistic_regression': …, 'gradient_boosting': …} test scores and choices, for a `TabularRows` source."""
  rows = {s: data.rows(s) for s in ('train', 'validation', 'test')}
  names = data.label_names
  out = {}
  scores, chosen = fit_and_score(lambda C: LogisticRegression(C=C, max_iter=5000),
                                 [{'C': c} for c in C_GRID], {s: r['features'] for s, r in rows.items()},
                                 rows, names)
  out['logistic_regression'] = {'chosen': chosen, **scores}
  keys = list(GBM_GRID)
  grid = [dict(zip(keys, v)) for v in itertools.product(*(GBM_GRID[k] for k in keys))]
  raw = {s: raw_features(data.patients(s), data.encoder.categories) for s in rows}
  scores, chosen = fit_and_score(
      lambda **p: HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **p), grid, raw, rows,
      names)
  out['gradient_boosting'] = {'chosen': chosen, **scores}
  return out

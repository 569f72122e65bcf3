"""Classical peers of the text models, run on exactly their splits and scored by the same report
(evals/multilabel.py): TF-IDF (word 1–2-grams, sublinear tf) + one-vs-rest logistic regression, its inverse
regularization C chosen on the validation split (never on test)."""

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from aigc_jax.evals import multilabel

C_GRID = (1.0, 4.0, 16.0, 64.0, 256.0)


def tfidf_logistic(splits: dict[str, tuple[list[str], np.ndarray]], seed: int = 0
                   ) -> tuple[dict[str, float], dict[str, np.ndarray], float]:
  """splits: {'train'|'validation'|'test': (texts, labels [N, K])}. Returns (test scores with thresholds tuned
  on validation, {split: probabilities}, the chosen C)."""
  vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
  x = {s: (vec.fit_transform(t) if s == 'train' else None) for s, (t, _) in splits.items() if s == 'train'}
  for s in ('validation', 'test'):
    x[s] = vec.transform(splits[s][0])
  y = {s: v[1] for s, v in splits.items()}
  best = None
  for c in C_GRID:
    model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed)).fit(x['train'], y['train'])
    p_val = model.predict_proba(x['validation'])
    t = multilabel.best_global_threshold(y['validation'], p_val)
    f1 = multilabel.f1_scores(y['validation'], p_val >= t)['micro_f1']
    if best is None or f1 > best[0]:
      best = (f1, c, model)
  _, c, model = best
  probs = {s: model.predict_proba(x[s]) for s in ('validation', 'test')}
  scores = multilabel.report(y['validation'], probs['validation'], y['test'], probs['test'])
  return scores, probs, c

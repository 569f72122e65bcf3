"""Classical peers of the text models, run on exactly their splits and scored by the same report
(evals/multilabel.py):

  tfidf_logistic  TF-IDF (word 1–2-grams, sublinear tf) + one-vs-rest logistic regression, its inverse
                  regularization C chosen on the validation split (never on test);
  tfidf_nearest   retrieval: a label's score is the highest cosine similarity between the document and any
                  training document with that label, in TF-IDF of word 1–2-grams and character 3–5-grams
                  (for many labels with few, short examples, as in ICD-10-CM code assignment).
"""

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import normalize
from sklearn.multiclass import OneVsRestClassifier

from aigc_jax.evals import multilabel

C_GRID = (1.0, 4.0, 16.0, 64.0, 256.0)


def tfidf_logistic(splits: dict[str, tuple[list[str], np.ndarray]], seed: int = 0
                   ) -> tuple[dict[str, float], dict[str, np.ndarray], float]:
  """splits: {'train'|'validation'|'test'|…: (texts, labels [N, K])}. Returns (test scores with thresholds
  tuned on validation, {split: probabilities} for every split but train, the chosen C)."""
  vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
  x = {s: vec.fit_transform(t) if s == 'train' else vec.transform(t) for s, (t, _) in splits.items()}
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
  probs = {s: model.predict_proba(x[s]) for s in splits if s != 'train'}
  scores = multilabel.report(y['validation'], probs['validation'], y['test'], probs['test'])
  return scores, probs, c


def _nearest_scores(x_train: sp.csr_matrix, y_train: np.ndarray, x: sp.csr_matrix, chunk: int = 256) -> np.ndarray:
  """[N, K]: for each row of x and label k, the max cosine similarity to a training row with label k."""
  rows, labels = np.nonzero(y_train)
  out = np.zeros((x.shape[0], y_train.shape[1]), np.float64)
  for i in range(0, x.shape[0], chunk):
    sim = (x[i:i + chunk] @ x_train.T).toarray()          # rows are L2-normalized: cosine
    block = np.zeros((sim.shape[0], y_train.shape[1]))
    np.maximum.at(block.T, labels, sim[:, rows].T)
    out[i:i + chunk] = block
  return out


def tfidf_nearest(splits: dict[str, tuple[list[str], np.ndarray]]
                  ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Like `tfidf_logistic`, by retrieval: (test scores with thresholds tuned on validation, {split: scores})."""
  vec = FeatureUnion([('words', TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                      ('chars', TfidfVectorizer(analyzer='char_wb', ngram_range=(3, 5), sublinear_tf=True))])
  # Rows of unit length (an empty row stays zero), so that a dot product is the cosine.
  x_train = normalize(vec.fit_transform(splits['train'][0]))
  probs = {s: _nearest_scores(x_train, splits['train'][1], normalize(vec.transform(splits[s][0])))
           for s in splits if s != 'train'}
  y = {s: v[1] for s, v in splits.items()}
  return multilabel.report(y['validation'], probs['validation'], y['test'], probs['test']), probs


def nearest_rows(vectorizer, train_texts: list[str], texts: list[str]) -> np.ndarray:
  """For each text, the index of the most similar training text by cosine of `vectorizer`'s features (fit on
  the training texts): the retrieval baselines of report generation and translation."""
  x_train = normalize(vectorizer.fit_transform(train_texts))
  return np.asarray((normalize(vectorizer.transform(texts)) @ x_train.T).argmax(axis=1)).ravel()

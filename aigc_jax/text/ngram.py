"""A classical peer for the language models' held-out perplexity: an interpolated Kneser–Ney bigram model
over the same tokens (Chen & Goodman's formulation, one discount), fit on the training rows in seconds.

A transformer that does not beat it has learned little more than which token tends to follow which.
"""

import numpy as np


class KneserNeyBigram:
  """p(w | v) = max(c(v, w) − d, 0) / c(v) + d · N1+(v •) / c(v) · p_cont(w), p_cont(w) = N1+(• w) / N1+(• •).

  Fit on (previous, next) token pairs; a context never seen falls back to p_cont, and a token never seen as a
  continuation gets a floor of one count (add-one on the continuation counts) so no held-out token has p = 0.
  """

  def __init__(self, prev: np.ndarray, nxt: np.ndarray, vocab_size: int, discount: float = 0.75):
    self.vocab_size, self.d = vocab_size, discount
    keys, counts = np.unique(prev.astype(np.int64) * vocab_size + nxt, return_counts=True)
    self._keys, self._counts = keys, counts
    pairs = keys
    self.context_count = np.bincount(prev, minlength=vocab_size).astype(np.float64)
    self.context_types = np.bincount(pairs // vocab_size, minlength=vocab_size).astype(np.float64)
    cont = np.bincount(pairs % vocab_size, minlength=vocab_size).astype(np.float64) + 1.0
    self.p_cont = cont / cont.sum()

  def log_prob(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Natural-log probabilities of `nxt` after `prev` (arrays of equal length)."""
    key = prev.astype(np.int64) * self.vocab_size + nxt
    at = np.clip(np.searchsorted(self._keys, key), 0, len(self._keys) - 1)
    c = np.where(self._keys[at] == key, self._counts[at], 0).astype(np.float64)
    cv = self.context_count[prev]
    seen = cv > 0
    safe = np.where(seen, cv, 1.0)
    p = np.where(seen, np.maximum(c - self.d, 0.0) / safe + self.d * self.context_types[prev] / safe * self.p_cont[nxt],
                 self.p_cont[nxt])
    return np.log(p)


def pairs(rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(previous, next) tokens of every within-document transition of packed rows: what a causal model predicts."""
  tok, seg = rows['tokens'], rows['segment_ids']
  keep = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)
  return tok[:, :-1][keep], tok[:, 1:][keep]

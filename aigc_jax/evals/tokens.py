"""Explanations of a text classifier's decision: which tokens of a document its score for one label depends on,
and the same checks as for images (aigc_jax/evals/attribution.py).

A document is tokens [N, T] with `keep` [N, T] (bool): its real tokens (padding False). Methods:
  integrated_gradients  over the token embeddings, from a baseline of zero vectors (positions kept), summed over
                        the width: a token's share of score(x) − score(baseline) (completeness holds per document).
  occlusion             leave one out: score − score without the token (taken out of the document as padding is:
                        nobody attends to it and the pooling skips it; later tokens keep their positions).
  attention             attention rollout (Abnar & Zuidema 2020): each block's head-averaged weights mixed half
                        and half with the residual identity, multiplied through the blocks, then averaged over the
                        real queries (the classifier pools the mean of its final states). Unsigned: it says where
                        the model looks, not which way a token pushes the label.
Checks:
  deletion_insertion    the label's probability as the most-attributed real tokens are taken out (deletion: a
                        faithful ranking falls fast, low area) or as only they are kept (insertion: high area).
  rank_correlation      Spearman correlation of |attribution| over the real tokens, between the trained model's
                        and a re-initialized one's (Adebayo et al. 2018).
"""

import html
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from aigc_jax.evals import attribution

KeepScore = Callable[[jax.Array], jax.Array]   # keep [N, T] bool → [N]


def integrated_gradients(score_of_embeddings: Callable[[jax.Array], jax.Array], embeddings: jax.Array,
                         steps: int = 32) -> jax.Array:
  """[N, T]: integrated gradients of score(embeddings [N, T, W]) from zero embeddings, summed over W."""
  baseline = jnp.zeros_like(embeddings)
  return attribution.integrated_gradients(score_of_embeddings, embeddings, baseline, steps).sum(-1)


def leave_one_out(score_fn: KeepScore, keep: jax.Array) -> jax.Array:
  """[N, T]: score(keep) − score(keep without token t), 0 at padding; one forward pass per position."""
  keep = jnp.asarray(keep, bool)
  clean = score_fn(keep)
  t = keep.shape[1]
  drops = jax.lax.map(lambda i: clean - score_fn(keep & (jnp.arange(t) != i)[None]), jnp.arange(t))  # [T, N]
  return jnp.where(keep, drops.T, 0.0)


def rollout(weights: jax.Array, keep: jax.Array) -> jax.Array:
  """[N, T] attention rollout from self-attention weights [depth, N, heads, T, T] (rows: queries)."""
  keep = jnp.asarray(keep, jnp.float32)
  t = weights.shape[-1]
  mixed = 0.5 * weights.mean(2) + 0.5 * jnp.eye(t)          # [depth, N, T, T]: the residual stream carries half
  mixed = mixed / mixed.sum(-1, keepdims=True)
  flow = mixed[0]
  for layer in mixed[1:]:
    flow = layer @ flow                                      # output position ← input token, through every block
  pooled = (flow * keep[:, :, None]).sum(1) / jnp.maximum(keep.sum(1, keepdims=True), 1.0)
  return pooled * keep


def deletion_insertion(prob_fn: KeepScore, keep: np.ndarray, scores: np.ndarray, steps: int = 16
                       ) -> tuple[np.ndarray, np.ndarray]:
  """([N] deletion AUC, [N] insertion AUC) of the label's probability over the share of real tokens taken out
  (deletion) or kept (insertion), the highest-scored first."""
  keep = np.asarray(keep, bool)
  ranked = np.argsort(-np.where(keep, scores, -np.inf), axis=1, kind='stable')   # real tokens first
  rank = np.empty_like(ranked)
  np.put_along_axis(rank, ranked, np.arange(keep.shape[1])[None].repeat(len(keep), 0), axis=1)
  real = keep.sum(1, keepdims=True)
  shares = np.linspace(0.0, 1.0, steps + 1)
  dele, ins = [], []
  for s in shares:
    top = rank < np.round(s * real)
    dele.append(np.asarray(prob_fn(jnp.asarray(keep & ~top))))
    ins.append(np.asarray(prob_fn(jnp.asarray(keep & top))))
  area = lambda curves: np.trapezoid(np.stack(curves, 1), shares, axis=1)
  return area(dele), area(ins)


def rank_correlation(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """[N] Spearman correlation of |a| and |b| over each document's real tokens."""
  return np.array([stats.spearmanr(np.abs(u[k]), np.abs(v[k]))[0] if k.sum() > 1 else np.nan
                   for u, v, k in zip(a, b, np.asarray(keep, bool))])


def pieces(text: str, offsets: list[tuple[int, int]], scores) -> list[tuple[str, float | None]]:
  """The text cut at its tokens' character spans: (piece, the token's score), with the text between tokens (and
  after the last one the model read) as (piece, None)."""
  out, at = [], 0
  for (start, end), score in zip(offsets, scores):
    start = max(start, at)   # byte-level tokens of one character share its span: show it once
    if start > at:
      out.append((text[at:start], None))
    if end > start:
      out.append((text[start:end], float(score)))
      at = end
  if at < len(text):
    out.append((text[at:], None))
  return out


def to_html(title: str, documents: list[dict]) -> str:
  """One page: per document its heading and its text with each token shaded by its score (red raises the
  label's score, blue lowers it; opacity by |score| over the document's largest), the score on hover."""
  rows = [f'<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>',
          '<style>body{font:15px/1.7 sans-serif;max-width:60em;margin:2em auto}span{border-radius:3px}'
          'h3{font-size:15px;margin:1.5em 0 .3em}</style>', f'<h2>{html.escape(title)}</h2>']
  for doc in documents:
    rows.append(f'<h3>{html.escape(doc["heading"])}</h3><p>')
    top = max((abs(s) for _, s in doc['pieces'] if s is not None), default=0.0) or 1.0
    for piece, score in doc['pieces']:
      text = html.escape(piece)
      if score is None:
        rows.append(f'<span style="color:#888">{text}</span>')
        continue
      color = '220,40,40' if score >= 0 else '40,90,230'
      rows.append(f'<span title="{score:+.4f}" style="background:rgba({color},{abs(score) / top * 0.8:.3f})">'
                  f'{text}</span>')
    rows.append('</p>')
  return ''.join(rows) + '\n'


def attention_picture(weights: np.ndarray, keep: np.ndarray, cell: int = 4) -> np.ndarray:
  """uint8 [H, W, 3]: each block's head-averaged attention over the real tokens (queries down, keys across),
  side by side with a 2-pixel gap; darker is more attention, scaled per block."""
  real = np.flatnonzero(keep)
  maps = []
  for w in weights:                       # [heads, T, T]
    m = w.mean(0)[np.ix_(real, real)]
    m = m / (m.max() or 1.0)
    maps.append(np.kron(1.0 - m, np.ones((cell, cell))))
    maps.append(np.ones((len(real) * cell, 2)))
  gray = np.concatenate(maps[:-1], 1)
  return (np.repeat(gray[..., None], 3, -1) * 255).round().astype(np.uint8)

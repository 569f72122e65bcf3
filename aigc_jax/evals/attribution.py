"""Explanations of an image classifier's decision: which pixels its score depends on, and checks that the
explanation is about the model at all.

Methods (each maps a score function x [N, H, W, C] → [N] and inputs x to attributions like x):
  integrated_gradients  Sundararajan et al. 2017: (x − x₀) · the mean gradient on the straight path from the
                        baseline x₀ (trapezoid rule); its attributions sum to score(x) − score(x₀).
  smoothgrad            Smilkov et al. 2017: the gradient averaged over Gaussian copies of x.
  occlusion             Zeiler & Fergus 2014: the score's drop when a patch is set to the baseline.
Checks:
  deletion / insertion  Petsiuk et al. 2018: the class probability as the most-attributed pixels are set to the
                        baseline (deletion: lower area = a faithful map) or revealed on it (insertion: higher).
  rank_correlation      Adebayo et al. 2018's model-randomization check: the Spearman correlation of |attribution|
                        between the trained model and one with re-initialized weights; a map that hardly
                        changes explains the input, not the model.
The baseline for CT is water (0 HU): the body's background density, so a region set to it loses its
structure without becoming an air hole inside the body.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

ScoreFn = Callable[[jax.Array], jax.Array]


def _grad(score_fn: ScoreFn) -> Callable[[jax.Array], jax.Array]:
  return jax.grad(lambda x: jnp.sum(score_fn(x)))  # per example: the scores do not mix examples


def integrated_gradients(score_fn: ScoreFn, x: jax.Array, baseline: jax.Array, steps: int = 32) -> jax.Array:
  """(x − baseline) × the path-averaged gradient, `steps` + 1 points with the trapezoid rule."""
  grad = _grad(score_fn)
  alphas = jnp.linspace(0.0, 1.0, steps + 1)
  weights = jnp.full((steps + 1,), 1.0 / steps).at[0].set(0.5 / steps).at[-1].set(0.5 / steps)

  def body(acc, aw):
    a, w = aw
    return acc + w * grad(baseline + a * (x - baseline)), None
  total, _ = jax.lax.scan(body, jnp.zeros_like(x), (alphas, weights))
  return (x - baseline) * total


def smoothgrad(score_fn: ScoreFn, x: jax.Array, key: jax.Array, samples: int = 16, sigma: float = 0.1
               ) -> jax.Array:
  """The mean gradient over `samples` copies of x with Gaussian noise of std `sigma` (window units)."""
  grad = _grad(score_fn)

  def body(acc, k):
    return acc + grad(x + sigma * jax.random.normal(k, x.shape, x.dtype)), None
  total, _ = jax.lax.scan(body, jnp.zeros_like(x), jax.random.split(key, samples))
  return total / samples


def occlusion(score_fn: ScoreFn, x: jax.Array, baseline: jax.Array, patch: int = 4) -> jax.Array:
  """score(x) − score(x with one patch × patch tile set to the baseline), spread over that tile."""
  n, h, w = x.shape[:3]
  if h % patch or w % patch:
    raise ValueError(f'occlusion patch {patch} does not tile {h}×{w} slices: pick a divisor.')
  clean = score_fn(x)
  tiles = [(i, j) for i in range(0, h, patch) for j in range(0, w, patch)]

  def one(tile):
    i, j = tile
    mask = jnp.zeros((1, h, w, 1), x.dtype)
    mask = jax.lax.dynamic_update_slice(mask, jnp.ones((1, patch, patch, 1), x.dtype), (0, i, j, 0))
    return clean - score_fn(x * (1 - mask) + baseline * mask)
  drops = jax.lax.map(one, jnp.array(tiles))  # [tiles, N], tiles in row-major order
  grid = drops.T.reshape(n, h // patch, w // patch)
  return jnp.repeat(jnp.repeat(grid, patch, 1), patch, 2)[..., None] * jnp.ones_like(x)


def deletion_insertion(prob_fn: ScoreFn, x: np.ndarray, attribution: np.ndarray, baseline: np.ndarray,
                       steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """([N] deletion AUC, [N] insertion AUC) of the class probability over the share of pixels changed, most
  attributed first (by the attribution summed over channels)."""
  n = x.shape[0]
  order = np.argsort(-attribution.reshape(n, -1, x.shape[-1]).sum(-1), axis=1)  # [N, pixels]
  pixels = order.shape[1]
  shares = np.linspace(0.0, 1.0, steps + 1)
  dele, ins = [], []
  for s in shares:
    k = int(round(s * pixels))
    top = np.zeros((n, pixels), bool)
    np.put_along_axis(top, order[:, :k], True, axis=1)
    top = top.reshape(x.shape[:3] + (1,))
    dele.append(np.asarray(prob_fn(jnp.asarray(np.where(top, baseline, x)))))
    ins.append(np.asarray(prob_fn(jnp.asarray(np.where(top, x, baseline)))))
  area = lambda curves: np.trapezoid(np.stack(curves, 1), shares, axis=1)
  return area(dele), area(ins)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[N] Spearman correlation of |a| and |b| per example (Adebayo et al.'s similarity of two maps)."""
  return np.array([stats.spearmanr(np.abs(u).ravel(), np.abs(v).ravel())[0] for u, v in zip(a, b)])


def overlay(image: np.ndarray, attribution: np.ndarray) -> np.ndarray:
  """uint8 [H, 2W, 3]: the slice in its window beside it with the attribution over it (red: raises the score,
  blue: lowers it; opacity by |attribution| over its 99th percentile)."""
  gray = np.clip((image[..., 0] + 1.0) / 2.0, 0.0, 1.0)
  a = attribution.sum(-1)
  scale = np.percentile(np.abs(a), 99) or 1.0
  mag = np.clip(np.abs(a) / scale, 0.0, 1.0)[..., None]
  color = np.where((a >= 0)[..., None], np.array([1.0, 0.1, 0.1]), np.array([0.1, 0.3, 1.0]))
  over = gray[..., None] * (1 - 0.7 * mag) + color * 0.7 * mag
  return (np.concatenate([np.repeat(gray[..., None], 3, -1), over], 1) * 255).round().astype(np.uint8)

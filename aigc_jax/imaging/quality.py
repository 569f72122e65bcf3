"""Image-quality, realism, diversity and memorization metrics as plain functions of numpy arrays.

Used by `python -m aigc_jax.evaluate` and by the restoration models (PSNR/SSIM/RMSE against a target). All
are offline and deterministic given their inputs (and a seed where they subsample or bootstrap).
"""

import numpy as np
from scipy import ndimage
from scipy import stats

# Tissue bands (HU) for per-band histogram distances and anatomy checks.
BANDS = {'air': (-1100, -900), 'lung': (-900, -500), 'fat': (-150, -50), 'soft_tissue': (-50, 150),
         'bone': (300, 3100)}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik (2003)


def rmse(x: np.ndarray, y: np.ndarray) -> float:
  return float(np.sqrt(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)))


def psnr(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
  """10·log10(range² / MSE) in dB; `data_range` is the span of valid values (e.g. the HU window width)."""
  mse = rmse(x, y) ** 2
  return float('inf') if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def _ssim_maps(x, y, data_range, sigma=1.5):
  """SSIM and its contrast-structure part, as maps (Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  blur = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5, mode='reflect')
  mx, my = blur(x), blur(y)
  vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
  cs = (2 * cov + c2) / (vx + vy + c2)
  return (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs, cs


def ssim(x: np.ndarray, y: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
  """Mean structural similarity of two 2-D images (Wang et al. 2004), over `mask` where given (e.g. the body)."""
  m = _ssim_maps(x, y, data_range)[0]
  return float(np.mean(m if mask is None else m[mask]))


def ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
  """Multi-scale SSIM over as many 2× scales as the image allows (≥ 11 px at the coarsest), weights
  renormalized; contrast-structure at the fine scales, full SSIM at the coarsest."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  scales = max(1, min(len(MS_SSIM_WEIGHTS), int(np.floor(np.log2(min(x.shape) / 11.0))) + 1))
  w = np.asarray(MS_SSIM_WEIGHTS[:scales])
  w = w / w.sum()
  out = 1.0
  for k in range(scales):
    full, cs = _ssim_maps(x, y, data_range)
    value = np.mean(full) if k == scales - 1 else np.mean(cs)
    out *= max(value, 0.0) ** w[k]
    x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2].reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean((1, 3))
    y = y[: y.shape[0] // 2 * 2, : y.shape[1] // 2 * 2].reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean((1, 3))
  return float(out)


def frechet_from_moments(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
  """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) between two Gaussians.

  tr (Σ1 Σ2)^½ is the sum of the square roots of the eigenvalues of Σ1 Σ2, which are those of the symmetric
  positive semi-definite √Σ1 Σ2 √Σ1: two symmetric eigen-decompositions, no general matrix square root
  (scipy's `sqrtm(..., disp=False)` is gone in SciPy 1.18) and no imaginary parts to drop. Eigenvalues that
  rounding pushes below zero (singular covariances: fewer samples than dimensions) count as zero.
  """
  s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
  w, v = np.linalg.eigh((s1 + s1.T) / 2)
  root1 = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
  inner = root1 @ s2 @ root1
  tr_root = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0)))
  m1, m2 = np.asarray(m1, np.float64), np.asarray(m2, np.float64)
  return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_root)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
  """The Fréchet distance between Gaussians fitted to two feature sets [N, D] (FID in that feature space).

  With fewer samples than dimensions (a monitor's few samples in Inception's 2048) the D × D moments are never
  formed: with A1, A2 the centred features, Σi = AiᵀAi / (ni − 1), and the nonzero eigenvalues of Σ1 Σ2 are
  those of (A1 A2ᵀ)(A1 A2ᵀ)ᵀ / ((n1 − 1)(n2 − 1)), so tr (Σ1 Σ2)^½ is the sum of the singular values of the
  n1 × n2 matrix A1 A2ᵀ over √((n1 − 1)(n2 − 1)). The same value, without two 2048² eigen-decompositions.
  """
  f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
  (n1, d), n2 = f1.shape, len(f2)
  if max(n1, n2) >= d or min(n1, n2) < 2:
    return frechet_from_moments(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
  a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
  tr_root = np.sum(np.linalg.svd(a1 @ a2.T, compute_uv=False)) / np.sqrt((n1 - 1) * (n2 - 1))
  return float(np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.sum(a1 * a1) / (n1 - 1) + np.sum(a2 * a2) / (n2 - 1)
               - 2.0 * tr_root)


def kernel_inception_distance(f1: np.ndarray, f2: np.ndarray) -> float:
  """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a·b / D + 1)³ (KID, Bińkowski et al. 2018)."""
  d = f1.shape[1]
  k = lambda a, b: (a @ b.T / d + 1.0) ** 3
  kxx, kyy, kxy = k(f1, f1), k(f2, f2), k(f1, f2)
  m, n = len(f1), len(f2)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2.0 * kxy.mean())


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
  return np.sqrt(np.maximum(d2, 0.0))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  """k-NN manifold precision and recall (Kynkäänniemi et al. 2019) of feature sets [N, D].

  Each set's manifold is the union of balls around its points, each ball reaching that point's k-th nearest
  neighbour in the same set. Precision: the share of fake points inside the real manifold (fidelity);
  recall: the share of real points inside the fake manifold (coverage).
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

  def radii(x):
    return np.sort(_pairwise(x, x), axis=1)[:, k]  # column 0 is the point itself

  r_real, r_fake = radii(real), radii(fake)
  cross = _pairwise(fake, real)  # [fake, real]
  precision = float(np.mean(np.any(cross <= r_real[None, :], axis=1)))
  recall = float(np.mean(np.any(cross.T <= r_fake[None, :], axis=1)))
  return precision, recall


def hu_wasserstein(generated: np.ndarray, real: np.ndarray, *, max_values: int = 200_000, seed: int = 0
                   ) -> dict[str, float]:
  """W1 (in HU) between the pixel-value distributions, overall and within each tissue band of `BANDS`
  (values inside the band on both sides; NaN where either side has none)."""
  rng = np.random.default_rng(seed)
  pick = lambda v: rng.choice(v, max_values, replace=False) if v.size > max_values else v
  g, r = pick(np.ravel(generated)), pick(np.ravel(real))
  out = {'all': float(stats.wasserstein_distance(g, r))}
  for name, (lo, hi) in BANDS.items():
    gb, rb = g[(g >= lo) & (g < hi)], r[(r >= lo) & (r < hi)]
    out[name] = float(stats.wasserstein_distance(gb, rb)) if gb.size and rb.size else float('nan')
  return out


def anatomy(hu: np.ndarray) -> dict[str, bool]:
  """Is there a body (the largest component above −500 HU, ≥ 10% of the image, clear of the corners), lungs
  (air-like components inside it, ≥ 0.5% of the image) and bone (a component above 300 HU inside it) in
  this axial slice? 'plausible' is all three."""
  area = hu.size
  body_lab, n = ndimage.label(hu > -500)
  body = np.zeros(hu.shape, bool)
  if n:
    sizes = ndimage.sum(np.ones_like(hu), body_lab, range(1, n + 1))
    body = ndimage.binary_fill_holes(body_lab == 1 + int(np.argmax(sizes)))
  corners = body[0, 0] or body[0, -1] or body[-1, 0] or body[-1, -1]  # a body is surrounded by air
  has_body = body.sum() >= 0.1 * area and not corners
  lung_lab, n = ndimage.label(body & (hu < -400))
  lung_sizes = ndimage.sum(np.ones_like(hu), lung_lab, range(1, n + 1)) if n else np.zeros(0)
  bone_lab, n = ndimage.label(body & (hu > 300))
  found = {'body': bool(has_body), 'lungs': bool(has_body and np.any(lung_sizes >= 0.005 * area)),
           'bone': bool(has_body and n > 0)}
  return {**found, 'plausible': all(found.values())}


def nearest_update(state: dict | None, queries: np.ndarray, train: np.ndarray, groups: np.ndarray,
                   offset: int = 0) -> dict:
  """Folds one chunk of training images into the nearest-neighbour search of `nearest_neighbours`.

  Args:
    state: what the previous chunks left (None before the first).
    queries: [S, ...] the images (or features) searched for.
    train: [C, ...] this chunk of training images, in the same space.
    groups: [C] non-negative int group (patient or volume) of each training image.
    offset: position of this chunk's first image in the whole training set (for the returned index).

  Returns:
    The new state: per query, the nearest distance, its group and position ('d1', 'g1', 'i1') and the
    nearest distance among all other groups ('d2', 'g2').
  """
  q = queries.reshape(len(queries), -1).astype(np.float64)
  t = train.reshape(len(train), -1).astype(np.float64)
  groups = np.asarray(groups, np.int64)
  d = np.sqrt(np.maximum((q * q).sum(1)[:, None] + (t * t).sum(1)[None] - 2.0 * q @ t.T, 0.0))
  rows = np.arange(len(q))
  # This chunk's best group (the row minimum) and the best of its other groups.
  j = np.argmin(d, axis=1)
  c1, h1 = d[rows, j], groups[j]
  other = np.where(groups[None] == h1[:, None], np.inf, d)
  k = np.argmin(other, axis=1)
  c2, h2 = other[rows, k], np.where(np.isfinite(other[rows, k]), groups[k], -1)
  if state is None:
    return {'d1': c1, 'g1': h1, 'i1': j + offset, 'd2': c2, 'g2': h2}
  # Merge two (best, best-other-group) summaries: the best is the better best; the second is the smallest
  # candidate from another group. A group's true minimum is listed in whichever part it ranks in the top two
  # whenever it can matter, so taking minima over the four listed candidates is exact.
  take = c1 < state['d1']
  g1 = np.where(take, h1, state['g1'])
  cand = np.stack([state['d1'], state['d2'], c1, c2])
  cand_g = np.stack([state['g1'], state['g2'], h1, h2])
  cand = np.where(cand_g == g1[None], np.inf, cand)
  m = np.argmin(cand, axis=0)
  return {'d1': np.where(take, c1, state['d1']), 'g1': g1, 'i1': np.where(take, j + offset, state['i1']),
          'd2': cand[m, rows], 'g2': cand_g[m, rows]}


def nearest_result(state: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(index, distance, ratio) of a finished search; see `nearest_neighbours`."""
  d1, d2 = state['d1'], state['d2']
  with np.errstate(invalid='ignore'):
    ratio = np.where(np.isfinite(d2), d1 / np.maximum(d2, 1e-12), np.nan)
  return state['i1'], d1, ratio


def nearest_neighbours(samples: np.ndarray, train: np.ndarray, groups: np.ndarray | None = None, *,
                       chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """For each sample, its nearest training image (L2 over pixels or features), that distance, and the ratio
  nearest / second nearest, the second taken from another group (near 0: one training image is much closer
  than anything else, a likely copy).

  `groups` [len(train)] names the patient or volume of each training image; without it every image is its
  own group. Grouping matters for volumes: a copy of one slice has the adjacent, nearly identical slice of
  the same scan as its second-nearest image, which would hide the copy; what tells a copy is one scan much
  closer than every other scan. The ratio is NaN where the training images hold one group only. `chunk`
  bounds memory (the work is done `chunk` training images at a time; the answer does not depend on it).
  """
  groups = np.arange(len(train)) if groups is None else np.asarray(groups)
  state = None
  for i in range(0, len(train), chunk):
    state = nearest_update(state, samples, train[i:i + chunk], groups[i:i + chunk], offset=i)
  return nearest_result(state)


def bootstrap_ci(values: np.ndarray, *, level: float = 0.95, n: int = 1000, seed: int = 0
                 ) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of per-sample values."""
  values = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, len(values), (n, len(values)))].mean(1)
  return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))

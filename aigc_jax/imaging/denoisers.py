"""The classical CT denoisers a learned one must beat: total variation, non-local means and BM3D.

Each works on one slice in HU and is told the noise: σ, estimated from the slice itself (`noise_sigma_hu`, the
robust wavelet estimate of Donoho & Johnstone restricted to the body), times a strength α. α is the one
parameter, chosen on validation pairs (`tune`), never on the pairs a table reports, so each method adapts to
the noise of every slice the way a user would run it (BM3D is given the noise level; NLM's filter strength h and
TV's weight scale with it).

  tv    scikit-image's Chambolle total variation, weight = α·σ
  nlm   scikit-image's non-local means (7² patches in a 23² search window, fast mode), h = α·σ
  bm3d  the `bm3d` package of Tampere University (Mäkinen, Azzari & Foi 2020), σ_psd = α·σ (white). Its licence
        allows non-commercial use only, so it is a peer, installed from requirements-peers.txt, not a
        dependency of the library.
"""

import time

import numpy as np

HU_SCALE = 1000.0  # slices are denoised as HU / 1000 (water 0, air −1): the range these libraries expect
GRIDS = {'tv': (0.5, 1.0, 1.5, 2.0, 3.0),
         'nlm': (0.6, 0.8, 1.0, 1.3, 1.6, 2.0),
         'bm3d': (0.75, 1.0, 1.25, 1.5, 2.0)}
PEER_HINT = 'pip install -r requirements-peers.txt (bm3d, non-commercial licence)'


def noise_sigma_hu(hu: np.ndarray, mask: np.ndarray | None = None) -> float:
  """σ of the noise in a slice (HU): the median absolute finest-scale diagonal Haar detail / 0.6745, over the 2×2
  blocks inside `mask` (default: all). Anatomy has little energy at that scale, so it reads the noise; FBP noise
  is correlated, so this is an index of the noise level, consistent across slices, not the pixel σ itself."""
  h, w = (hu.shape[0] // 2) * 2, (hu.shape[1] // 2) * 2
  x = np.asarray(hu[:h, :w], np.float64)
  detail = (x[0::2, 0::2] - x[1::2, 0::2] - x[0::2, 1::2] + x[1::2, 1::2]) / 2.0
  if mask is not None:
    m = np.asarray(mask[:h, :w], bool)
    detail = detail[m[0::2, 0::2] & m[1::2, 0::2] & m[0::2, 1::2] & m[1::2, 1::2]]
  if not detail.size:
    raise ValueError('noise_sigma_hu: the mask leaves no 2×2 block to measure the noise on.')
  return float(np.median(np.abs(detail)) / 0.6745)


def available(method: str) -> str:
  """'' when `method` can run here, else why not and how to fix it."""
  if method not in GRIDS:
    raise ValueError(f'unknown classical denoiser {method!r}; choose from {sorted(GRIDS)}.')
  if method == 'bm3d':
    try:
      import bm3d  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      return f'bm3d is not installed: {PEER_HINT}'
  return ''


def apply(method: str, hu: np.ndarray, alpha: float, sigma_hu: float) -> np.ndarray:
  """The slice `hu` denoised by `method` at strength `alpha` for noise σ = `sigma_hu` (HU)."""
  why = available(method)
  if why:
    raise RuntimeError(why)
  x = np.asarray(hu, np.float64) / HU_SCALE
  s = max(alpha * sigma_hu, 1e-3) / HU_SCALE
  if method == 'tv':
    from skimage import restoration  # pylint: disable=g-import-not-at-top
    out = restoration.denoise_tv_chambolle(x, weight=s)
  elif method == 'nlm':
    from skimage import restoration  # pylint: disable=g-import-not-at-top
    out = restoration.denoise_nl_means(x, patch_size=7, patch_distance=11, h=s, sigma=sigma_hu / HU_SCALE,
                                       fast_mode=True)
  else:
    import bm3d  # pylint: disable=g-import-not-at-top
    out = bm3d.bm3d(x, sigma_psd=s)
  return (np.asarray(out) * HU_SCALE).astype(np.float32)


def tune(method: str, pairs, grid=None) -> tuple[float, dict[float, float]]:
  """(best α, {α: mean RMSE in the mask}) over validation `pairs` of (low HU, reference HU, body mask)."""
  scores = {}
  for alpha in grid or GRIDS[method]:
    errs = []
    for low, ref, mask in pairs:
      out = apply(method, low, alpha, noise_sigma_hu(low, mask))
      errs.append(float(np.sqrt(np.mean((out[mask] - ref[mask]) ** 2))))
    scores[float(alpha)] = float(np.mean(errs))
  return min(scores, key=scores.get), scores


def timed(fn, *args):
  """(fn(*args), seconds)."""
  t = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - t

"""Resampling of slices and volumes: to a spacing in mm, and into a square of a given size."""

import numpy as np
from skimage import transform


DIHEDRAL = 8  # the flips and quarter turns of a square


def dihedral(x: np.ndarray, t: int, undo: bool = False) -> np.ndarray:
  """The t-th of the eight flips/quarter turns of images [..., H, W] (t ≥ 4 mirrored left-right), or with
  `undo` its inverse: augmentation (the CT bank) and the test-time average (`restorer`) share it."""
  if undo:
    x = np.rot90(x, -(t % 4), axes=(-2, -1))
    return x[..., ::-1] if t >= 4 else x
  return np.rot90(x[..., ::-1] if t >= 4 else x, t % 4, axes=(-2, -1))


class NoSpacing(ValueError):
  """The header gave no spacing, so a resampling in mm is impossible."""


def resize(vol: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Linear resampling to `shape`, low-passed first where it shrinks (thin structures would alias)."""
  if tuple(vol.shape) == tuple(shape):
    return vol
  shrink = any(n < o for n, o in zip(shape, vol.shape))
  return transform.resize(vol, shape, order=1, mode='edge', anti_aliasing=shrink,
                          preserve_range=True).astype(np.float32)


def fit_square(vol: np.ndarray, size: int, fill: float) -> tuple[np.ndarray, float]:
  """Scales [..., H, W] so the longer side is `size` and pads the shorter with `fill`; returns the scale."""
  h, w = vol.shape[-2:]
  scale = size / max(h, w)
  h2, w2 = max(1, round(h * scale)), max(1, round(w * scale))
  vol = resize(vol, vol.shape[:-2] + (h2, w2))
  if (h2, w2) == (size, size):
    return vol, scale
  out = np.full(vol.shape[:-2] + (size, size), fill, np.float32)
  y0, x0 = (size - h2) // 2, (size - w2) // 2
  out[..., y0:y0 + h2, x0:x0 + w2] = vol
  return out, scale


def resample(vol: np.ndarray, spacing: tuple[float, float, float], *, target: tuple[float, ...] = (),
             size: int = 0, fill: float = 0.0) -> tuple[np.ndarray, tuple[float, float, float]]:
  """Resamples [slices, rows, cols] to `target` spacing (mm) and/or fits the slices into size × size.

  Returns the volume and its new (row, col, slice) spacing.
  """
  d, h, w = vol.shape
  sr, sc, ss = spacing
  if target:
    if sr <= 0 or sc <= 0:
      raise NoSpacing('no pixel spacing in the header, so --spacing cannot be applied')
    h2, w2 = max(1, round(h * sr / target[0])), max(1, round(w * sc / target[1]))
    d2 = d
    if len(target) == 3 and d > 1:
      if ss <= 0:
        raise NoSpacing('no slice spacing in the header, so the third --spacing value cannot be applied')
      d2 = max(1, round(d * ss / target[2]))
    vol = resize(vol, (d2, h2, w2))
    sr, sc, ss = sr * h / h2, sc * w / w2, ss * d / d2
  if size:
    vol, scale = fit_square(vol, size, fill)
    sr, sc = sr / scale, sc / scale
  return vol, (float(sr), float(sc), float(ss))


def at_pixel_size(image: np.ndarray, spacing: tuple[float, float], pixel_mm: float, size: int,
                  fill: float) -> np.ndarray:
  """[rows, cols] with (row, col) `spacing` in mm resampled to `pixel_mm` pixels and cut or padded (with
  `fill`) about its centre to size × size: a field of view of size · pixel_mm, so objects keep their size in
  mm. Raises NoSpacing when the spacing is unknown."""
  if min(spacing) <= 0:
    raise NoSpacing('no pixel spacing in the header, so the slice cannot be put at the model\'s pixel size')
  h, w = image.shape
  image = resize(image, (max(1, round(h * spacing[0] / pixel_mm)), max(1, round(w * spacing[1] / pixel_mm))))
  out = np.full((size, size), fill, np.float32)
  h, w = image.shape
  sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)          # source start (cut)
  dy, dx = max(0, (size - h) // 2), max(0, (size - w) // 2)          # destination start (pad)
  ch, cw = min(h, size), min(w, size)
  out[dy:dy + ch, dx:dx + cw] = image[sy:sy + ch, sx:sx + cw]
  return out

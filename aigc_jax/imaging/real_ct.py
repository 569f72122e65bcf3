"""Real CT slices for checking restoration, read from installed packages, never copied into this repository.

What ships offline (pydicom's test files and the `pydicom-data` wheel, MIT; requirements-data.txt):

  head         693_UNCR.dcm            512², 0.48 mm pixels (245 mm field of view), 140 kVp, 5 mm slice
  abdomen      explicit_VR-UN.dcm      512², 0.86 mm pixels (440 mm), a contrast-enhanced upper abdomen
  brain_0/1    eCT_Supplemental.dcm    two frames of an enhanced CT object, 512², 0.39 mm pixels: a processed
                                       image (skull stripped, air at −1024 around the brain, a 2×2 block pattern
                                       of upsampling), kept apart as `PROCESSED`: its "noiseless" reference
                                       carries that pattern, which any denoiser is scored for removing

Left out, and why: CT_small.dcm (a 128² crop of 85 mm around the spine, not a whole cross-section, so there is
no object to project), bad_sequence.dcm (JPEG-lossless pixel data: needs gdcm or pylibjpeg), 693_J2KR and
693_UNCI (the same image as 693_UNCR in other encodings).

None of these slices is used by training (which sees the procedural phantom only): they are a held-out real
test set. `aigc_jax.compare_denoisers` puts each through the acquisition model (`acquisition.py`) at its own
pixel size: the reference is the noiseless reconstruction of the slice (projection + filtered back-projection, no quantum
noise) and the input the same projection with Poisson noise at the given dose, so the RMSE of a denoiser
against the reference measures what it does to the added noise and to the anatomy, the way the Mayo low-dose
challenge inserts noise into full-dose scans. The slices keep their own scanner noise in both.
"""

import dataclasses

import numpy as np
from scipy import ndimage


# name → (file, frame); files are found through pydicom.data (pydicom-data registers itself there).
SLICES = {
    'head': ('693_UNCR.dcm', 0),
    'abdomen': ('explicit_VR-UN.dcm', 0),
    'brain_0': ('eCT_Supplemental.dcm', 0),
    'brain_1': ('eCT_Supplemental.dcm', 1),
}
NATIVE = ('head', 'abdomen')          # scanner reconstructions
PROCESSED = ('brain_0', 'brain_1')    # post-processed images (above)
INSTALL_HINT = 'pip install --no-deps -r requirements-data.txt (it holds pydicom-data==1.0.0)'


@dataclasses.dataclass(frozen=True)
class RealSlice:
  name: str
  hu: np.ndarray        # [N, N] float32, air (−1000) outside the inscribed circle, nothing below −1000
  pixel_mm: float

  @property
  def fov_mm(self) -> float:
    return self.hu.shape[0] * self.pixel_mm


def _rescale_and_spacing(ds, frame):
  """(slope, intercept, pixel spacing) of a classic or an enhanced (functional-group) CT object."""
  slope, intercept, spacing = ds.get('RescaleSlope'), ds.get('RescaleIntercept'), ds.get('PixelSpacing')
  for groups in (ds.get('PerFrameFunctionalGroupsSequence'), ds.get('SharedFunctionalGroupsSequence')):
    if not groups:
      continue
    g = groups[min(frame, len(groups) - 1)]
    if slope is None and 'PixelValueTransformationSequence' in g:
      t = g.PixelValueTransformationSequence[0]
      slope, intercept = t.RescaleSlope, t.RescaleIntercept
    if spacing is None and 'PixelMeasuresSequence' in g:
      spacing = g.PixelMeasuresSequence[0].PixelSpacing
  if spacing is None:
    raise ValueError('no PixelSpacing')
  return float(slope if slope is not None else 1.0), float(intercept or 0.0), spacing


def load(name: str) -> RealSlice:
  """One of `SLICES`, in HU, square, with air outside the scanned circle."""
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import data as pydicom_data  # pylint: disable=g-import-not-at-top
  if name not in SLICES:
    raise ValueError(f'real CT slice {name!r} is not one of {sorted(SLICES)}.')
  file, frame = SLICES[name]
  try:
    path = pydicom_data.get_testdata_file(file, download=False)  # never the network
  except Exception:  # pylint: disable=broad-except
    path = None
  if not path:
    raise FileNotFoundError(f'{file} (real CT slice {name!r}) is not installed: {INSTALL_HINT}.')
  ds = pydicom.dcmread(path)
  pixels = np.asarray(ds.pixel_array, np.float32)
  if pixels.ndim == 3:
    pixels = pixels[frame]
  slope, intercept, spacing = _rescale_and_spacing(ds, frame)
  hu = pixels * slope + intercept  # as_object clips: padding (−3024, −2000) is air to the scanner
  if float(spacing[0]) != float(spacing[1]) or hu.shape[0] != hu.shape[1]:
    raise ValueError(f'{file}: {hu.shape} with spacing {list(spacing)}; a square grid of square pixels is needed.')
  return RealSlice(name, *as_object(hu, spacing))


def in_circle(hu: np.ndarray) -> np.ndarray:
  """A square slice with air outside its inscribed circle, which is all the projector sees (pixel centres
  beyond n/2, or beyond scikit-image's radon's own circle)."""
  n = hu.shape[0]
  c, i = np.arange(n) + 0.5 - n / 2, np.arange(n) - n // 2
  outside = (c[:, None] ** 2 + c[None, :] ** 2 > (n / 2) ** 2) | (i[:, None] ** 2 + i[None, :] ** 2 > (n // 2) ** 2)
  return np.where(outside, -1000.0, hu).astype(np.float32)


def as_object(hu: np.ndarray, spacing) -> tuple[np.ndarray, float]:
  """A user's CT slice [rows, cols] in HU with (row, col) spacing in mm as an object the acquisition model can
  scan: clipped to −1000…3000 HU as `load` does, padded with air to a square (the pixels keep their size) and
  air outside the inscribed circle; returns (slice, pixel mm). Raises ValueError naming what is missing."""
  row, col = (float(t) for t in spacing)
  if row <= 0 or col <= 0:
    raise ValueError('no pixel spacing (the scanner geometry needs the pixel size)')
  if abs(row - col) > 0.01 * max(row, col):
    raise ValueError(f'pixels of {row:.3g} × {col:.3g} mm; square pixels are needed')
  hu = np.clip(np.nan_to_num(np.asarray(hu, np.float32), nan=-1000.0), -1000.0, 3000.0)
  h, w = hu.shape
  n = max(h, w)
  out = np.full((n, n), -1000.0, np.float32)
  out[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = hu
  return in_circle(out), row


def fingerprint(hu: np.ndarray) -> str:
  """A hash of a slice's pixels to 0.1 HU (no header value in it): how a test slice is recognised as one that
  a run trained on, whichever reader decoded it."""
  import hashlib  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256(repr(np.shape(hu)).encode())
  h.update(np.round(np.asarray(hu, np.float64) * 10.0).astype(np.int32).tobytes())
  return h.hexdigest()[:16]


def load_all(names=None) -> list[RealSlice]:
  return [load(n) for n in (names or SLICES)]


def body_mask(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
  """The body: the largest connected region above `threshold` HU with its holes (lungs, bowel gas) filled."""
  labels, n = ndimage.label(hu > threshold)
  if not n:
    return np.zeros(hu.shape, bool)
  largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(hu), labels, range(1, n + 1))))
  return ndimage.binary_fill_holes(labels == largest)


"""Photographs as CT objects: structure the phantom does not have, from the sample images scikit-image ships.

A denoiser trained on the phantom alone learns the phantom's world (uniform tissues, smooth ellipses) and on
real CT alters the anatomy it does not know: fine texture, strands, small vessels (docs/restoration.md, the error
split). Denoisers trained on photographs carry over to other images because photographs hold structure at every
scale and contrast. So the CT bank can scan photographs as objects (`data.bank_photo_share`): each is turned to
grey, scaled to the bank's slice size, centred on soft tissue (40 HU) and stretched to each of `spans_hu` (its
darkest to brightest pixel about that many HU apart: 150 HU for texture at the contrast of soft-tissue detail,
1000 for edges of bone and air), given a pixel size between 0.5 and 0.9 mm (so a share of them is scanned as a
small, quiet object and the rest as a large one), then scanned by the acquisition model like any slice.

The images are read from the installed scikit-image package (its `data` folder), never copied into this
repository and never downloaded. Only those whose scikit-image docstring releases them are used: public domain,
CC0, or "no known copyright restrictions" (coins, ihc); `moon.png`, which states nothing, is left out.
"""

import os

import numpy as np
from skimage import color
from skimage import io

from aigc_jax.imaging import geometry
from aigc_jax.imaging import real_ct

# The photographs and micrographs of scikit-image's data folder that hold natural structure (not the drawings,
# text pages, checkerboards or binary silhouettes) and are released (module docstring), in a fixed order: an
# object's index is its place here.
NAMES = ('astronaut.png', 'brick.png', 'camera.png', 'cell.png', 'chelsea.png', 'coffee.png', 'coins.png',
         'grass.png', 'gravel.png', 'hubble_deep_field.jpg', 'ihc.png', 'microaneurysms.png', 'retina.jpg',
         'rocket.jpg')
CENTRE_HU = 40.0  # soft tissue
PIXEL_MM = (0.5, 0.9)


def data_folder() -> str:
  from skimage import data  # pylint: disable=g-import-not-at-top
  return os.path.dirname(data.__file__)


def grey(path: str) -> np.ndarray:
  """A photograph as grey levels in [0, 1] (float64)."""
  img = np.asarray(io.imread(path))
  if img.ndim == 3:
    img = color.rgb2gray(img[..., :3]) if img.shape[-1] >= 3 else img[..., 0]
  img = img.astype(np.float64)
  lo, hi = float(img.min()), float(img.max())
  return (img - lo) / max(hi - lo, 1e-12)


def objects(spans_hu=(150.0, 1000.0), size: int = 512, folder: str = '') -> list[tuple[np.ndarray, float]]:
  """(square object in HU with air outside its inscribed circle, pixel mm) for every photograph of `NAMES` and
  every span of `spans_hu`, in that order (module docstring). Raises FileNotFoundError naming a missing photo."""
  folder = folder or data_folder()
  spans = [float(s) for s in spans_hu]
  if not spans or min(spans) <= 0:
    raise ValueError(f'config.data.bank_photo_spans_hu={tuple(spans_hu)}: give one or more spans in HU, each > 0.')
  out = []
  for i, name in enumerate(NAMES):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
      raise FileNotFoundError(f'bank_photo_share: the photograph {path} is missing: reinstall the pinned '
                              'scikit-image (pip install -r requirements.txt) or set config.data.bank_photo_share=0.')
    img = grey(path)
    n = min(img.shape)
    top, left = (img.shape[0] - n) // 2, (img.shape[1] - n) // 2
    img = img[top:top + n, left:left + n]  # the centre square: no padding edge inside the object
    if n > size:
      img = geometry.resize(img, (size, size)).astype(np.float64)
    pixel_mm = PIXEL_MM[0] + (PIXEL_MM[1] - PIXEL_MM[0]) * i / max(len(NAMES) - 1, 1)
    for span in spans:
      hu = CENTRE_HU + (img - img.mean()) * span
      out.append(real_ct.as_object(hu.astype(np.float32), (pixel_mm, pixel_mm)))
  return out

"""A built-in procedural CT source: axial slices of a chest/upper abdomen in Hounsfield units.

Every example is a deterministic function of (seed, index), so the source is random-access, reproducible
and as long as asked for, and needs no download. Tissues sit in their published HU ranges (air −1000,
lung ≈ −850, fat ≈ −100, soft tissue 20–80, bone ≥ 300). Geometry is random but anatomically ordered: a
slice level z ∈ [0, 1] runs from the upper chest (large lungs) to the upper abdomen (liver, kidneys).
Image convention as in radiology: patient's right on the image left, anterior at the top.

Lesions: solid lung nodules (denser than the lung) and, where the liver is in the slice, hypodense liver
masses. Their kind, centre, radius and contrast travel with the example as labels, for conditioning,
classification and reports. Slices are rendered at `supersample`× and box-averaged (partial volume); the
noiseless slice is what the acquisition model (`acquisition.py`) projects for low-/full-dose pairs.
"""

import numpy as np

from aigc_jax.imaging import acquisition

HU_AIR = -1000.0
HU_LUNG = -850.0
HU_FAT = -100.0
HU_MEDIASTINAL_FAT = -90.0
HU_MUSCLE = 45.0
HU_BLOOD = 40.0
HU_LIVER = 60.0
HU_KIDNEY = 30.0
HU_CSF = 10.0
HU_CANCELLOUS = 350.0
HU_CORTICAL = 900.0
HU_NODULE = 35.0

# Tissue classes of the label map (`phantom_slice(..., with_tissue=True)`), with the published HU range of
# each; `tests/test_data.py` checks the rendered slices against these.
TISSUES = {0: 'air', 1: 'lung', 2: 'fat', 3: 'soft_tissue', 4: 'bone', 5: 'csf'}
HU_RANGES = {'air': (-1050, -950), 'lung': (-900, -500), 'fat': (-120, -80), 'soft_tissue': (20, 80),
             'bone': (300, 2000), 'csf': (0, 15)}
AIR, LUNG, FAT, SOFT, BONE, CSF = range(6)
LESION_NONE, LESION_NODULE, LESION_MASS = 0, 1, 2

def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
  """Boolean mask of a rotated ellipse on the normalized grid (cell centres of a uniform n × n grid).

  Only the ellipse's bounding square is evaluated: most shapes (ribs, vessels, nodules) cover a few percent
  of the slice, and the full-grid version made the phantom the slowest part of the input pipeline.
  """
  n = yy.shape[0]
  r = max(ry, rx)  # a rotated ellipse lies inside the circle of its larger radius
  first = lambda c: min(max(int(np.floor((c - r + 1.0) / 2.0 * n - 0.5)), 0), n)
  last = lambda c: min(max(int(np.ceil((c + r + 1.0) / 2.0 * n - 0.5)) + 1, 0), n)
  y0, y1, x0, x1 = first(cy), last(cy), first(cx), last(cx)
  mask = np.zeros(yy.shape, bool)
  if y0 >= y1 or x0 >= x1:
    return mask
  c, s = np.cos(angle), np.sin(angle)
  dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
  u = (dx * c + dy * s) / rx
  v = (-dx * s + dy * c) / ry
  mask[y0:y1, x0:x1] = u * u + v * v <= 1.0
  return mask


def phantom_slice(seed: int, index: int, size: int, *, supersample: int = 2, noise_std: float = 12.0,
                  lesion_prob: float = 0.3, with_tissue: bool = False):
  """One slice.

  Args:
    seed: the dataset seed; (seed, index) fixes everything about the slice.
    index: which slice.
    size: output height and width in pixels (32 to 512 for use; 16 for tests).
    supersample: rendered at size*supersample and box-averaged, for partial-volume edges.
    noise_std: white noise (HU) added at the end, like a full-dose scan; 0 gives the noiseless object that
      `acquisition.simulate` projects.
    lesion_prob: the chance that the slice carries a lesion.
    with_tissue: also return the tissue class map ([size, size] int8, `TISSUES`; -1 where a pixel mixes
      classes).

  Returns:
    (hu [size, size] float32, labels[, tissue]). labels: 'level' (z in [0, 1]), 'lesion' (0/1),
    'lesion_kind' (0 none, 1 lung nodule, 2 liver mass), 'lesion_center' (y, x in [-1, 1]),
    'lesion_radius' (in units of the half field of view), 'lesion_contrast' (HU against its host tissue);
    zeros when there is no lesion.
  """
  if not 16 <= size <= 1024:
    raise ValueError(f'phantom image size {size} is outside 16..1024; set config.data.image_size.')
  rng = np.random.default_rng([seed, index])
  n = size * supersample
  coords = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
  yy, xx = np.meshgrid(coords, coords, indexing='ij')
  img = np.full((n, n), HU_AIR, np.float32)
  tissue = np.full((n, n), AIR, np.int8)

  def paint(mask, hu, cls):
    img[mask] = hu
    tissue[mask] = cls

  z = rng.uniform(0.0, 1.0)
  # Body: an ellipse wider than deep, a little posterior of centre.
  by, bx = rng.uniform(0.02, 0.08), rng.uniform(-0.03, 0.03)
  ry, rx = rng.uniform(0.55, 0.68), rng.uniform(0.78, 0.9)
  fat = rng.uniform(0.05, 0.11)
  body = _ellipse(yy, xx, by, bx, ry, rx)
  paint(body, HU_FAT, FAT)
  paint(_ellipse(yy, xx, by, bx, ry - fat, rx - fat), HU_MUSCLE, SOFT)
  paint(body & ~_ellipse(yy, xx, by, bx, ry - 0.012, rx - 0.012), HU_MUSCLE, SOFT)  # skin
  cavity_ry, cavity_rx = ry - fat - 0.06, rx - fat - 0.07
  cavity = _ellipse(yy, xx, by, bx, cavity_ry, cavity_rx)
  paint(cavity, HU_MEDIASTINAL_FAT, FAT)

  # Ribs: a ring of small bony ovals between the muscle wall and the cavity.
  spine_y = by + cavity_ry * 0.78
  n_ribs = rng.integers(7, 11)
  rib_r = 0.028 + 0.02 * rng.uniform()
  for a in np.linspace(0.15 * np.pi, 1.85 * np.pi, n_ribs) + rng.uniform(-0.08, 0.08, n_ribs):
    if abs(np.cos(a) - 1) < 0.05:  # no rib straight through the spine
      continue
    cy, cx = by + (cavity_ry + 0.03) * np.cos(a), bx + (cavity_rx + 0.03) * np.sin(a)
    paint(_ellipse(yy, xx, cy, cx, rib_r * 0.8, rib_r * 1.4, angle=a), HU_CORTICAL, BONE)
    paint(_ellipse(yy, xx, cy, cx, rib_r * 0.4, rib_r * 0.8, angle=a), HU_CANCELLOUS, BONE)

  # Lungs shrink as the diaphragm rises into the slice; the right lung (image left) gives way to the liver.
  lung_scale = np.clip(1.15 - z, 0.15, 1.0)
  lungs = []
  for side in (-1.0, 1.0):
    lry = cavity_ry * 0.85 * lung_scale ** 0.5
    lrx = cavity_rx * 0.36 * lung_scale ** 0.5
    cy = by - 0.05 + (1 - lung_scale) * 0.15 + rng.uniform(-0.02, 0.02)
    cx = bx + side * (cavity_rx * 0.5 + rng.uniform(-0.02, 0.02))
    lung = _ellipse(yy, xx, cy, cx, lry, lrx, angle=side * rng.uniform(0.05, 0.2)) & cavity
    paint(lung, HU_LUNG, LUNG)
    lungs.append((lung, cy, cx, lry, lrx))
    # Vessels: bright dots and branches within the lung, denser near the hilum (medial side).
    for _ in range(rng.integers(6, 14)):
      t = rng.uniform(0, 2 * np.pi)
      rr = np.sqrt(rng.uniform(0.02, 0.8))
      vy, vx = cy + lry * rr * np.sin(t), cx + lrx * rr * np.cos(t) * 0.9
      vr = rng.uniform(0.008, 0.022) * (1.2 - rr)
      vessel = _ellipse(yy, xx, vy, vx, vr, vr * rng.uniform(1.0, 2.5), angle=rng.uniform(0, np.pi))
      paint(vessel & lung, HU_BLOOD, SOFT)

  # Mediastinum: heart (anterior, to the patient's left = image right), aorta, sternum.
  heart_scale = np.clip(1.2 - abs(z - 0.45) * 1.6, 0.0, 1.0)
  if heart_scale > 0.1:
    paint(_ellipse(yy, xx, by - 0.05, bx + 0.08, 0.2 * heart_scale, 0.25 * heart_scale, angle=-0.5),
          HU_BLOOD + 5.0, SOFT)
  aorta_r = rng.uniform(0.045, 0.06)
  paint(_ellipse(yy, xx, spine_y - 0.15, bx + 0.09, aorta_r, aorta_r), HU_BLOOD, SOFT)
  paint(_ellipse(yy, xx, by - ry + fat + 0.025, bx, 0.025, 0.06), HU_CORTICAL, BONE)  # sternum

  # Abdomen below the diaphragm: liver on the image left, kidneys beside the spine lower down.
  liver = np.zeros_like(cavity)
  liver_scale = np.clip((z - 0.45) * 2.2, 0.0, 1.0)
  if liver_scale > 0:
    liver = _ellipse(yy, xx, by + 0.02, bx - cavity_rx * 0.35, cavity_ry * 0.8 * liver_scale,
                     cavity_rx * 0.6 * liver_scale, angle=0.3) & cavity & ~lungs[0][0]
    paint(liver, HU_LIVER, SOFT)
  if z > 0.72:
    k = np.clip((z - 0.72) * 4, 0.3, 1.0)
    for side in (-1.0, 1.0):
      paint(_ellipse(yy, xx, spine_y - 0.02, bx + side * 0.25, 0.1 * k, 0.065 * k, angle=side * 0.4),
            HU_KIDNEY, SOFT)

  # Spine: vertebral body (cancellous core, cortical rim), spinal canal, spinous process.
  vr = rng.uniform(0.08, 0.1)
  paint(_ellipse(yy, xx, spine_y, bx, vr, vr * 1.1), HU_CORTICAL, BONE)
  paint(_ellipse(yy, xx, spine_y, bx, vr * 0.78, vr * 0.88), HU_CANCELLOUS, BONE)
  canal_y = spine_y + vr + 0.045
  paint(_ellipse(yy, xx, canal_y, bx, 0.05, 0.045), HU_CORTICAL, BONE)
  paint(_ellipse(yy, xx, canal_y, bx, 0.035, 0.032), HU_CSF, CSF)
  paint(_ellipse(yy, xx, canal_y + 0.08, bx, 0.045, 0.018), HU_CORTICAL, BONE)

  # Optional lesion: a solid nodule in a lung, or a hypodense mass where enough liver is in the slice.
  kind, center, radius, contrast = LESION_NONE, np.zeros(2, np.float32), 0.0, 0.0
  if rng.uniform() < lesion_prob:
    if liver.mean() > 0.03 and rng.uniform() < 0.5:
      kind = LESION_MASS
      ys, xs = np.nonzero(liver)
      j = rng.integers(len(ys))
      center = np.array([coords[ys[j]], coords[xs[j]]], np.float32)
      radius = float(rng.uniform(0.04, 0.12))
      hu = HU_LIVER - rng.uniform(25, 45)  # hypodense, 15..35 HU: still soft tissue
      paint(_ellipse(yy, xx, center[0], center[1], radius, radius * rng.uniform(0.8, 1.2)) & liver, hu, SOFT)
      contrast = hu - HU_LIVER
    else:
      kind = LESION_NODULE
      lung, cy, cx, lry, lrx = lungs[rng.integers(0, 2)]
      t, rr = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.5))
      center = np.array([cy + lry * rr * np.sin(t), cx + lrx * rr * np.cos(t)], np.float32)
      radius = float(rng.uniform(0.025, 0.07))
      hu = HU_NODULE + rng.uniform(-15, 25)
      paint(_ellipse(yy, xx, center[0], center[1], radius, radius), hu, SOFT)
      contrast = hu - HU_LUNG

  # Acquisition: partial-volume averaging, then quantum-like noise.
  img = img.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  if noise_std:
    img += rng.normal(0.0, noise_std, img.shape).astype(np.float32)
  labels = {
      'level': np.float32(z),
      'lesion': np.int32(kind != LESION_NONE),
      'lesion_kind': np.int32(kind),
      'lesion_center': center,
      'lesion_radius': np.float32(radius),
      'lesion_contrast': np.float32(contrast),
  }
  if not with_tissue:
    return img.astype(np.float32), labels
  blocks = tissue.reshape(size, supersample, size, supersample).transpose(0, 2, 1, 3).reshape(size, size, -1)
  pure = np.all(blocks == blocks[..., :1], axis=-1)
  return img.astype(np.float32), labels, np.where(pure, blocks[..., 0], -1).astype(np.int8)


class PhantomCT:
  """Random-access source of phantom slices; `len` is the nominal epoch, any index is a new slice.

  With `dose=(full_dose, low_dose_fraction, fov_mm)` each example is a (low-dose, full-dose) pair of the same
  noiseless slice reconstructed by the acquisition model: 'hu' at `full_dose` (photons/mm² over the scan,
  `acquisition.FULL_DOSE` is clinical) and 'hu_low' at `full_dose · low_dose_fraction`.
  """

  def __init__(self, *, seed: int, size: int, num_examples: int, lesion_prob: float = 0.3,
               dose: tuple[float, float, float] | None = None):
    self.seed, self.size, self.num_examples = seed, size, num_examples
    self.lesion_prob, self.dose = lesion_prob, dose
    if dose is not None and not (dose[0] > 0 and 0 < dose[1] <= 1 and dose[2] > 0):
      # The old (low_photons, full_photons, fov_mm) tuple fails here instead of running at a near-zero dose.
      raise ValueError(f'PhantomCT dose={tuple(dose)}: give (full_dose, low_dose_fraction, fov_mm), full_dose in '
                       f'photons/mm² (clinical: {acquisition.FULL_DOSE:.3g}), 0 < low_dose_fraction <= 1, '
                       'fov_mm > 0.')

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if self.dose is None:
      hu, labels = phantom_slice(self.seed, int(index), self.size, lesion_prob=self.lesion_prob)
      return {'hu': hu, **labels}
    clean, labels = phantom_slice(self.seed, int(index), self.size, lesion_prob=self.lesion_prob,
                                  noise_std=0.0)
    full_dose, low_dose_fraction, fov_mm = self.dose
    rng = np.random.default_rng([self.seed, int(index), 1])  # the scan noise: its own stream
    low, full = acquisition.dose_pair(clean, low_dose=full_dose * low_dose_fraction, full_dose=full_dose,
                                      rng=rng, fov_mm=fov_mm)
    return {'hu': full, 'hu_low': low, **labels}

"""A built-in procedural CT source: axial slices of a chest/upper abdomen in Hounsfield units.

Every example is a deterministic function of (seed, index), so the source is random-access, reproducible
and as long as asked for, and needs no download. Tissues sit in their published HU ranges (air −1000,
lung ≈ −850, fat ≈ −100, soft tissue 20–80, bone ≥ 300). Geometry is random but anatomically ordered: a
slice level z ∈ [0, 1] runs from the upper chest (large lungs) to the upper abdomen (liver, kidneys).
Image convention as in radiology: patient's right on the image left, anterior at the top.
"""

import numpy as np

HU_AIR = -1000.0
HU_LUNG = -850.0
HU_FAT = -100.0
HU_MUSCLE = 45.0
HU_BLOOD = 40.0
HU_LIVER = 60.0
HU_KIDNEY = 30.0
HU_CSF = 10.0
HU_CANCELLOUS = 350.0
HU_CORTICAL = 900.0
HU_LESION = 35.0


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
  """Boolean mask of a rotated ellipse on the normalized grid."""
  c, s = np.cos(angle), np.sin(angle)
  dy, dx = yy - cy, xx - cx
  u = (dx * c + dy * s) / rx
  v = (-dx * s + dy * c) / ry
  return u * u + v * v <= 1.0


def phantom_slice(seed: int, index: int, size: int, *, supersample: int = 2
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """One slice.

  Args:
    seed: the dataset seed; (seed, index) fixes everything about the slice.
    index: which slice.
    size: output height and width in pixels (32 to 512).
    supersample: rendered at size*supersample and box-averaged, for partial-volume edges.

  Returns:
    (hu [size, size] float32, labels) where labels holds 'level' (z), 'lesion' (0/1) and the lesion's
    'lesion_center' (y, x in [-1, 1]) and 'lesion_radius' (normalized), zeros when absent.
  """
  if not 16 <= size <= 1024:
    raise ValueError(f'phantom image size {size} is outside 16..1024; set config.data.image_size.')
  rng = np.random.default_rng([seed, index])
  n = size * supersample
  coords = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
  yy, xx = np.meshgrid(coords, coords, indexing='ij')
  img = np.full((n, n), HU_AIR, np.float32)

  z = rng.uniform(0.0, 1.0)
  # Body: an ellipse wider than deep, a little posterior of centre; the table sits below it.
  by, bx = rng.uniform(0.02, 0.08), rng.uniform(-0.03, 0.03)
  ry, rx = rng.uniform(0.55, 0.68), rng.uniform(0.78, 0.9)
  fat = rng.uniform(0.05, 0.11)
  body = _ellipse(yy, xx, by, bx, ry, rx)
  img[body] = HU_FAT
  inner = _ellipse(yy, xx, by, bx, ry - fat, rx - fat)
  img[inner] = HU_MUSCLE
  img[body & ~_ellipse(yy, xx, by, bx, ry - 0.012, rx - 0.012)] = HU_MUSCLE  # skin
  cavity_ry, cavity_rx = ry - fat - 0.06, rx - fat - 0.07
  cavity = _ellipse(yy, xx, by, bx, cavity_ry, cavity_rx)
  img[cavity] = HU_FAT + 40.0  # mediastinal/retroperitoneal fat, mixed with soft tissue

  # Ribs: a ring of small bony ovals between the muscle wall and the cavity.
  spine_y = by + cavity_ry * 0.78
  n_ribs = rng.integers(7, 11)
  rib_r = 0.028 + 0.02 * rng.uniform()
  for a in np.linspace(0.15 * np.pi, 1.85 * np.pi, n_ribs) + rng.uniform(-0.08, 0.08, n_ribs):
    if abs(np.cos(a) - 1) < 0.05:  # no rib straight through the spine
      continue
    ry_r = (cavity_ry + 0.03)
    rx_r = (cavity_rx + 0.03)
    cy, cx = by + ry_r * np.cos(a), bx + rx_r * np.sin(a)
    rib = _ellipse(yy, xx, cy, cx, rib_r * 0.8, rib_r * 1.4, angle=a)
    img[rib] = HU_CORTICAL
    img[_ellipse(yy, xx, cy, cx, rib_r * 0.4, rib_r * 0.8, angle=a)] = HU_CANCELLOUS

  # Lungs shrink as the diaphragm rises into the slice; the right lung (image left) gives way to the liver.
  lung_scale = np.clip(1.15 - z, 0.15, 1.0)
  lung_masks = []
  for side in (-1.0, 1.0):
    lry = cavity_ry * 0.85 * lung_scale ** 0.5
    lrx = cavity_rx * 0.36 * (lung_scale ** 0.5)
    cy = by - 0.05 + (1 - lung_scale) * 0.15 + rng.uniform(-0.02, 0.02)
    cx = bx + side * (cavity_rx * 0.5 + rng.uniform(-0.02, 0.02))
    lung = _ellipse(yy, xx, cy, cx, lry, lrx, angle=side * rng.uniform(0.05, 0.2)) & cavity
    img[lung] = HU_LUNG
    lung_masks.append((lung, cy, cx, lry, lrx))
    # Vessels: bright dots and branches within the lung, denser near the hilum (medial side).
    for _ in range(rng.integers(6, 14)):
      t = rng.uniform(0, 2 * np.pi)
      rr = np.sqrt(rng.uniform(0.02, 0.8))
      vy, vx = cy + lry * rr * np.sin(t), cx + lrx * rr * np.cos(t) * 0.9
      vr = rng.uniform(0.008, 0.022) * (1.2 - rr)
      img[_ellipse(yy, xx, vy, vx, vr, vr * rng.uniform(1.0, 2.5), angle=rng.uniform(0, np.pi)) & lung] = HU_BLOOD

  # Mediastinum: heart (soft tissue, anterior-left of the patient = image right), aorta, sternum.
  heart_scale = np.clip(1.2 - abs(z - 0.45) * 1.6, 0.0, 1.0)
  if heart_scale > 0.1:
    hy, hx = by - 0.05, bx + 0.08
    img[_ellipse(yy, xx, hy, hx, 0.2 * heart_scale, 0.25 * heart_scale, angle=-0.5)] = HU_BLOOD + 5.0
  aorta_r = rng.uniform(0.045, 0.06)
  img[_ellipse(yy, xx, spine_y - 0.15, bx + 0.09, aorta_r, aorta_r)] = HU_BLOOD
  img[_ellipse(yy, xx, by - ry + fat + 0.025, bx, 0.025, 0.06)] = HU_CORTICAL  # sternum

  # Abdomen below the diaphragm: liver on the image left, kidneys beside the spine lower down.
  liver_scale = np.clip((z - 0.45) * 2.2, 0.0, 1.0)
  if liver_scale > 0:
    lv = _ellipse(yy, xx, by + 0.02, bx - cavity_rx * 0.35, cavity_ry * 0.8 * liver_scale,
                  cavity_rx * 0.6 * liver_scale, angle=0.3) & cavity
    img[lv & ~lung_masks[0][0]] = HU_LIVER
  if z > 0.72:
    k = np.clip((z - 0.72) * 4, 0.3, 1.0)
    for side in (-1.0, 1.0):
      img[_ellipse(yy, xx, spine_y - 0.02, bx + side * 0.25, 0.1 * k, 0.065 * k, angle=side * 0.4)] = HU_KIDNEY

  # Spine: vertebral body (cancellous core, cortical rim), spinal canal, spinous process.
  vr = rng.uniform(0.08, 0.1)
  img[_ellipse(yy, xx, spine_y, bx, vr, vr * 1.1)] = HU_CORTICAL
  img[_ellipse(yy, xx, spine_y, bx, vr * 0.78, vr * 0.88)] = HU_CANCELLOUS
  canal_y = spine_y + vr + 0.045
  img[_ellipse(yy, xx, canal_y, bx, 0.05, 0.045)] = HU_CORTICAL
  img[_ellipse(yy, xx, canal_y, bx, 0.035, 0.032)] = HU_CSF
  img[_ellipse(yy, xx, canal_y + 0.08, bx, 0.045, 0.018)] = HU_CORTICAL

  # Optional lesion: a nodule inside a lung (or the liver when there is no lung to speak of).
  has_lesion = rng.uniform() < 0.3
  center, radius = np.zeros(2, np.float32), 0.0
  if has_lesion:
    lung, cy, cx, lry, lrx = lung_masks[rng.integers(0, 2)]
    t, rr = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.5))
    center = np.array([cy + lry * rr * np.sin(t), cx + lrx * rr * np.cos(t)], np.float32)
    radius = float(rng.uniform(0.025, 0.07))
    img[_ellipse(yy, xx, center[0], center[1], radius, radius)] = HU_LESION + rng.uniform(-15, 25)

  # Acquisition: partial-volume averaging, then quantum-like noise.
  img = img.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  img += rng.normal(0.0, 12.0, img.shape).astype(np.float32)
  labels = {
      'level': np.float32(z),
      'lesion': np.int32(has_lesion),
      'lesion_center': center,
      'lesion_radius': np.float32(radius),
  }
  return img.astype(np.float32), labels


class PhantomCT:
  """Random-access source of phantom slices; `len` is the nominal epoch, any index is a new slice."""

  def __init__(self, *, seed: int, size: int, num_examples: int):
    self.seed, self.size, self.num_examples = seed, size, num_examples

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    hu, labels = phantom_slice(self.seed, int(index), self.size)
    return {'hu': hu, **labels}

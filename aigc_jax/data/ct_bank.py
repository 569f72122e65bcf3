"""Restoration pairs at clinical scale: patches of phantom slices scanned at 0.5–1 mm pixels, at a range of doses.

Scanning a 512² slice with the acquisition model (`imaging/acquisition.py`: radon, Poisson counts, filtered
back-projection) takes about 6 s on one core, too slow to do per training example. So a bank of scans is made
once, in parallel processes, and cached on disk; examples are cut from it at no cost. Each banked slice keeps

  reference   the noiseless reconstruction (projection and FBP without quantum noise): the training target
  noise[k]    `noise_draws` independent quantum-noise images at the reference dose (quarter dose): the exact
              Poisson scan minus the reference, so their texture and their rise along dense rays are the
              scanner's

and an example (`PhantomPatches[i]`, a pure function of (seed, i)) is a `patch_size`² crop of one slice, centred
in the body, with input = reference + √(f_ref / f) · noise[k] for a dose fraction f drawn log-uniformly from
`dose_fractions` (quantum noise in a reconstruction scales as 1/√dose; exact for the Gaussian limit of Poisson
counts, which holds at these doses), then one of the eight flips/rotations of the square. One model so learns
the doses users have, blind to the level.

Bank files: `<cache_dir>/ct_bank/<key>/slice_<j>.npz`, the key a hash of everything that fixes them (seed,
slices, size, field of view, dose, lesion share, noise draws, acquisition version), so they are shared by runs and
never stale. Delete the folder to reclaim the space (1 MB per 512² slice and 0.5 MB per noise draw).
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage

from aigc_jax.data import phantom
from aigc_jax.imaging import acquisition

VERSION = 1  # bump when the acquisition model or the bank's layout changes: the key changes with it
DIHEDRAL = 8


def bank_key(seed, num_slices, size, fov_mm, full_dose, lesion_prob, noise_draws, texture_hu=(),
             fov_range_mm=(), bone_scale=()) -> str:
  spec = dict(seed=seed, slices=num_slices, size=size, fov=float(fov_mm), full_dose=float(full_dose),
              reference_fraction=acquisition.LOW_DOSE_FRACTION, lesion_prob=float(lesion_prob), draws=noise_draws,
              version=VERSION)
  if texture_hu:  # only when set, so that the banks made before textures existed keep their keys
    spec['texture_hu'] = [float(t) for t in texture_hu]
  if fov_range_mm:
    spec['fov_range_mm'] = [float(t) for t in fov_range_mm]
  if bone_scale:
    spec['bone_scale'] = [float(t) for t in bone_scale]
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def tissue_texture(seed: int, index: int, size: int, fov_mm: float, texture_hu) -> np.ndarray:
  """A zero-mean random field standing for the texture of real tissue (parenchyma, vessels, fat strands), which
  the phantom's uniform organs lack: white noise smoothed at 1, 2 and 4 mm with random weights, scaled to a
  standard deviation drawn log-uniformly from `texture_hu` (lo, hi) HU; a pure function of (seed, index)."""
  rng = np.random.default_rng([seed, index, 4])
  lo, hi = (tuple(texture_hu) * 2)[:2]
  pixel_mm = fov_mm / size
  field = sum(w * ndimage.gaussian_filter(rng.standard_normal((size, size)), mm / pixel_mm)
              for w, mm in zip(rng.dirichlet(np.ones(3)), (1.0, 2.0, 4.0)))
  return (np.exp(rng.uniform(np.log(lo), np.log(hi))) * field / field.std()).astype(np.float32)


def _log_uniform(seed: int, index: int, stream: int, bounds) -> float:
  lo, hi = bounds
  return float(np.exp(np.random.default_rng([seed, index, stream]).uniform(np.log(lo), np.log(hi))))


def slice_fov_mm(seed: int, index: int, fov_mm: float, fov_range_mm=()) -> float:
  """The field of view a banked slice is scanned at: `fov_mm`, or drawn log-uniformly from `fov_range_mm`."""
  return _log_uniform(seed, index, 5, fov_range_mm) if fov_range_mm else float(fov_mm)


def scan_slice(seed: int, index: int, size: int, fov_mm: float, full_dose: float, lesion_prob: float,
               noise_draws: int, texture_hu=(), fov_range_mm=(), bone_scale=()) -> dict[str, np.ndarray]:
  """One banked slice: its noiseless reconstruction and `noise_draws` quantum-noise images at quarter dose;
  with `texture_hu`, tissue texture is added inside the body (above -950 HU) before it is scanned; with
  `fov_range_mm`, the slice's field of view is drawn from that range: the phantom keeps its size in pixels, so a
  smaller field is a smaller patient (a head, a child) at finer pixels, and a quieter scan at the same dose; with
  `bone_scale`, the slice's bone (≥ 300 HU; the phantom's cortex is 900) is multiplied by a factor drawn from it:
  real cortical bone reaches 1,500–2,000 HU."""
  fov_mm = slice_fov_mm(seed, index, fov_mm, fov_range_mm)
  clean, _ = phantom.phantom_slice(seed, index, size, lesion_prob=lesion_prob, noise_std=0.0)
  if bone_scale:
    clean = np.where(clean >= 300.0, clean * _log_uniform(seed, index, 6, bone_scale), clean)
  if texture_hu:
    clean = np.where(clean > -950.0, clean + tissue_texture(seed, index, size, fov_mm, texture_hu), clean)
  sino, theta = acquisition.project(clean, fov_mm=fov_mm)
  ref = acquisition.reconstruct(sino, theta, dose=0, rng=None, size=size, fov_mm=fov_mm)
  rng = np.random.default_rng([seed, index, 3])
  dose = full_dose * acquisition.LOW_DOSE_FRACTION
  noise = np.stack([acquisition.reconstruct(sino, theta, dose=dose, rng=rng, size=size, fov_mm=fov_mm) - ref
                    for _ in range(noise_draws)])
  return {'reference': ref.astype(np.float32), 'noise': noise.astype(np.float16)}


def _build_part(folder, indices, params):
  for j in indices:
    path = os.path.join(folder, f'slice_{j}.npz')
    if os.path.exists(path):
      continue
    out = scan_slice(params['seed'], j, params['size'], params['fov_mm'], params['full_dose'],
                     params['lesion_prob'], params['noise_draws'], params.get('texture_hu', ()),
                     params.get('fov_range_mm', ()), params.get('bone_scale', ()))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp.npz')
    os.close(fd)
    np.savez(tmp, **out)
    os.replace(tmp, path)  # atomic: a crash never leaves half a slice that a later run would trust


def build(folder: str, num_slices: int, params: dict, workers: int) -> None:
  """Scans the slices missing from `folder`, in `workers` fresh Python processes (no JAX in them)."""
  os.makedirs(folder, exist_ok=True)
  missing = [j for j in range(num_slices) if not os.path.exists(os.path.join(folder, f'slice_{j}.npz'))]
  if not missing:
    return
  print(f'ct_bank: scanning {len(missing)} phantom slices at {params["size"]}² into {folder} '
        f'({workers} processes, about {6 * (params["size"] / 512) ** 2.5 * len(missing) / workers:.0f} s)',
        flush=True)
  procs = []
  for w in range(max(workers, 1)):
    part = missing[w::max(workers, 1)]
    if part:
      code = (f'from aigc_jax.data import ct_bank; ct_bank._build_part({folder!r}, {part!r}, {params!r})')
      procs.append(subprocess.Popen([sys.executable, '-c', code]))
  failed = [p.wait() for p in procs]
  if any(failed):
    raise RuntimeError(f'ct_bank: a scanning process failed (exit codes {failed}); the slices it finished are kept '
                       f'in {folder}, rerun to finish the rest.')


def _optional_range(name: str, value, unit: str, empty: str) -> tuple[float, ...]:
  value = tuple(float(t) for t in value)
  if value and not (len(value) == 2 and 0 < value[0] <= value[1]):
    raise ValueError(f'ct_bank: {name}={value}: give (lo, hi) {unit} with 0 < lo <= hi, or () for {empty}.')
  return value


class PhantomPatches:
  """Random-access source of (low-dose, noiseless) patch pairs at clinical scale (module docstring)."""

  def __init__(self, *, seed: int, size: int, patch: int, num_examples: int, num_slices: int, fov_mm: float,
               full_dose: float, dose_fractions, lesion_prob: float, noise_draws: int, cache_dir: str,
               workers: int = 2, texture_hu=(), fov_range_mm=(), bone_scale=()):
    lo, hi = (tuple(dose_fractions) * 2)[:2]
    texture_hu = _optional_range('bank_texture_hu', texture_hu, 'HU', "the phantom's uniform tissues")
    fov_range_mm = _optional_range('bank_fov_range_mm', fov_range_mm, 'mm', 'every slice at data.fov_mm')
    bone_scale = _optional_range('bank_bone_scale', bone_scale, '(factors)', "the phantom's bone")
    if not (0 < lo <= hi) or not 8 <= patch <= size or num_slices < 1 or noise_draws < 1:
      raise ValueError(f'ct_bank: dose_fractions={tuple(dose_fractions)} (0 < lo <= hi; above 1 is more than full '
                       f'dose, less noise), patch_size={patch} '
                       f'(8..image_size {size}), bank_slices={num_slices} and bank_noise_draws={noise_draws} '
                       '(>= 1) are needed.')
    self.seed, self.size, self.patch, self.num_examples = seed, size, patch, num_examples
    self.fractions = (float(lo), float(hi))
    self.params = dict(seed=seed, size=size, fov_mm=float(fov_mm), full_dose=float(full_dose),
                       lesion_prob=float(lesion_prob), noise_draws=int(noise_draws), texture_hu=texture_hu,
                       fov_range_mm=fov_range_mm, bone_scale=bone_scale)
    key = bank_key(seed, num_slices, size, fov_mm, full_dose, lesion_prob, noise_draws, texture_hu, fov_range_mm,
                   bone_scale)
    self.folder = os.path.join(os.path.expanduser(cache_dir), 'ct_bank', key)
    self.num_slices, self.workers = num_slices, workers
    self._bank = None

  def __len__(self) -> int:
    return self.num_examples

  @property
  def bank(self) -> list[dict[str, np.ndarray]]:
    if self._bank is None:
      build(self.folder, self.num_slices, self.params, self.workers)
      self._bank = []
      for j in range(self.num_slices):
        with np.load(os.path.join(self.folder, f'slice_{j}.npz')) as z:
          ref = z['reference']
          body = np.argwhere(ref > -500.0)  # patch centres: inside the body, where the noise and anatomy are
          self._bank.append({'reference': ref, 'noise': z['noise'], 'body': body})
    return self._bank

  def __getstate__(self):  # grain workers load the bank themselves from the cache
    return {**self.__dict__, '_bank': None}

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, int(index), 2])
    s = self.bank[int(rng.integers(self.num_slices))]
    k = int(rng.integers(len(s['noise'])))
    lo, hi = self.fractions
    f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    p, n = self.patch, self.size
    cy, cx = s['body'][rng.integers(len(s['body']))] if len(s['body']) else (n // 2, n // 2)
    top, left = int(np.clip(cy - p // 2, 0, n - p)), int(np.clip(cx - p // 2, 0, n - p))
    ref = s['reference'][top:top + p, left:left + p]
    low = ref + np.sqrt(acquisition.LOW_DOSE_FRACTION / f) * s['noise'][k, top:top + p, left:left + p]
    t = int(rng.integers(DIHEDRAL))
    turn = lambda x: np.ascontiguousarray(np.rot90(x[:, ::-1] if t >= 4 else x, t % 4)).astype(np.float32)
    return {'hu': turn(ref), 'hu_low': turn(low), 'dose_fraction': np.float32(f)}

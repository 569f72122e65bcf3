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

Real anatomy (`bank_source`, a folder of full-dose CT series or NIfTI volumes, e.g. a user's own): up to
`bank_source_slices` evenly spaced slices of each series are scanned the same way, at their own pixel size and
the run's dose per mm² (a head is scanned as a head, at its own grid), and a `bank_source_share` of the examples
is cut from them instead of the phantom. Their own scanner noise stays in the target, as in the Mayo
challenge's noise insertion. Only pixels and pixel sizes are read (`imaging/scans.py`); their bank, under
`<cache_dir>/ct_bank/source_<key>/`, is keyed by a hash of those pixels (and the seed and dose) and holds no
header value or path.

Photographs (`photo_share`, `data/photos.py`): scikit-image's sample photographs scanned as objects, a
`photo_share` of the examples (drawn before `bank_source`'s share, on their own stream), banked under
`<cache_dir>/ct_bank/photos_<key>/`: structure at every scale and contrast, so the model meets more than the
phantom's uniform tissues.

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
from aigc_jax.imaging import geometry

VERSION = 1  # bump when the acquisition model or the bank's layout changes: the key changes with it


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
  return scan_object(clean, fov_mm / size, full_dose, noise_draws, np.random.default_rng([seed, index, 3]))


def scan_object(clean: np.ndarray, pixel_mm: float, full_dose: float, noise_draws: int, rng) -> dict[str, np.ndarray]:
  """A square slice in HU as the bank keeps it: the noiseless reconstruction and `noise_draws` quantum-noise
  images at quarter dose, scanned at its own pixel size."""
  size = clean.shape[0]
  fov_mm = size * pixel_mm
  sino, theta = acquisition.project(clean, fov_mm=fov_mm)
  ref = acquisition.reconstruct(sino, theta, dose=0, rng=None, size=size, fov_mm=fov_mm)
  dose = full_dose * acquisition.LOW_DOSE_FRACTION
  noise = np.stack([acquisition.reconstruct(sino, theta, dose=dose, rng=rng, size=size, fov_mm=fov_mm) - ref
                    for _ in range(noise_draws)])
  return {'reference': ref.astype(np.float32), 'noise': noise.astype(np.float16)}


def source_objects(folder: str, max_per_series: int, min_side: int = 8) -> list[tuple[np.ndarray, float]]:
  """(square slice in HU, pixel mm) of up to `max_per_series` evenly spaced slices of every CT series under
  `folder` (`bank_source`); slices without a usable pixel size, or smaller than `min_side` (the patch), are left
  out with a count."""
  from aigc_jax.imaging import real_ct  # pylint: disable=g-import-not-at-top
  from aigc_jax.imaging import scans  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.expanduser(folder)):
    raise FileNotFoundError(f'config.data.bank_source={folder!r} is not a folder: point it at a folder of full-dose '
                            "CT series (DICOM or NIfTI), or set it to '' to train on the phantom.")
  try:
    found = scans.spaced_slices(os.path.expanduser(folder), max_per_series)
  except ValueError as e:
    raise ValueError(f'config.data.bank_source={folder!r}: {e}') from None
  out, left = [], {}
  for _, hu, spacing in found:
    try:
      if max(hu.shape) < min_side:
        raise ValueError(f'smaller than the {min_side}² patch')
      out.append(real_ct.as_object(hu, spacing))
    except ValueError as e:
      left[str(e)] = left.get(str(e), 0) + 1
  if left:
    print(f'ct_bank: {sum(left.values())} slices of bank_source left out: ' +
          '; '.join(f'{n} × {why}' for why, n in left.items()), flush=True)
  if not out:
    raise ValueError(f'config.data.bank_source={folder!r}: none of its {len(found)} slices can be scanned (above).')
  return out


def source_key(objects, seed: int, full_dose: float, noise_draws: int, kind: str = 'source') -> str:
  """The bank folder of `bank_source`'s slices (or the photographs', `kind`): everything that fixes them (the
  seed draws their noise)."""
  from aigc_jax.imaging import real_ct  # pylint: disable=g-import-not-at-top
  spec = dict(seed=seed, pixels=[real_ct.fingerprint(hu) for hu, _ in objects], pixel_mm=[round(p, 6) for _, p in objects],
              full_dose=float(full_dose), reference_fraction=acquisition.LOW_DOSE_FRACTION, draws=noise_draws,
              version=VERSION)
  return f'{kind}_' + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _save(folder, name, out):
  fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp.npz')
  os.close(fd)
  np.savez(tmp, **out)
  os.replace(tmp, os.path.join(folder, name))  # atomic: a crash never leaves half a slice that a later run trusts


def _objects(params) -> list[tuple[np.ndarray, float]]:
  """The objects a kind of source bank scans: the photographs, or the slices of `bank_source`."""
  if params.get('kind') == 'photos':
    from aigc_jax.data import photos  # pylint: disable=g-import-not-at-top
    return photos.objects(params['photo_spans_hu'], params['size'])
  return source_objects(params['source'], params['source_slices'], params['patch'])


def _build_sources(folder, indices, params):
  objects = _objects(params)
  for j in indices:
    if not os.path.exists(os.path.join(folder, f'slice_{j}.npz')):
      hu, pixel_mm = objects[j]
      _save(folder, f'slice_{j}.npz', scan_object(hu, pixel_mm, params['full_dose'], params['noise_draws'],
                                                  np.random.default_rng([params['seed'], j, 8])))


def _build_part(folder, indices, params):
  for j in indices:
    path = os.path.join(folder, f'slice_{j}.npz')
    if os.path.exists(path):
      continue
    _save(folder, f'slice_{j}.npz', scan_slice(
        params['seed'], j, params['size'], params['fov_mm'], params['full_dose'], params['lesion_prob'],
        params['noise_draws'], params.get('texture_hu', ()), params.get('fov_range_mm', ()),
        params.get('bone_scale', ())))


def build(folder: str, num_slices: int, params: dict, workers: int, part: str = '_build_part') -> None:
  """Scans the slices missing from `folder`, in `workers` fresh Python processes (no JAX in them); `part` is
  `_build_sources` for the slices of `params['source']`."""
  os.makedirs(folder, exist_ok=True)
  missing = [j for j in range(num_slices) if not os.path.exists(os.path.join(folder, f'slice_{j}.npz'))]
  if not missing:
    return
  what = params.get('kind', 'bank_source') if part == '_build_sources' else f'phantom slices at {params["size"]}²'
  print(f'ct_bank: scanning {len(missing)} {what} into {folder} '
        f'({workers} processes, about {6 * (params["size"] / 512) ** 2.5 * len(missing) / workers:.0f} s)',
        flush=True)
  procs = []
  for w in range(max(workers, 1)):
    chunk = missing[w::max(workers, 1)]
    if chunk:
      code = f'from aigc_jax.data import ct_bank; ct_bank.{part}({folder!r}, {chunk!r}, {params!r})'
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


def _load(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as z:
    ref = z['reference']
    body = np.argwhere(ref > -500.0)  # patch centres: inside the body, where the noise and anatomy are
    return {'reference': ref, 'noise': z['noise'], 'body': body}


class PhantomPatches:
  """Random-access source of (low-dose, noiseless) patch pairs at clinical scale (module docstring)."""

  def __init__(self, *, seed: int, size: int, patch: int, num_examples: int, num_slices: int, fov_mm: float,
               full_dose: float, dose_fractions, lesion_prob: float, noise_draws: int, cache_dir: str,
               workers: int = 2, texture_hu=(), fov_range_mm=(), bone_scale=(), source: str = '',
               source_share: float = 1.0, source_slices: int = 32, photo_share: float = 0.0,
               photo_spans_hu=(150.0, 1000.0)):
    lo, hi = (tuple(dose_fractions) * 2)[:2]
    texture_hu = _optional_range('bank_texture_hu', texture_hu, 'HU', "the phantom's uniform tissues")
    fov_range_mm = _optional_range('bank_fov_range_mm', fov_range_mm, 'mm', 'every slice at data.fov_mm')
    bone_scale = _optional_range('bank_bone_scale', bone_scale, '(factors)', "the phantom's bone")
    if not (0 < lo <= hi) or not 8 <= patch <= size or num_slices < 1 or noise_draws < 1:
      raise ValueError(f'ct_bank: dose_fractions={tuple(dose_fractions)} (0 < lo <= hi; above 1 is more than full '
                       f'dose, less noise), patch_size={patch} '
                       f'(8..image_size {size}), bank_slices={num_slices} and bank_noise_draws={noise_draws} '
                       '(>= 1) are needed.')
    if source and not (0.0 < source_share <= 1.0 and source_slices >= 1):
      raise ValueError(f'ct_bank: bank_source_share={source_share} (0 < share <= 1: the part of the examples cut '
                       f'from bank_source) and bank_source_slices={source_slices} (>= 1 per series) are needed.')
    if not 0.0 <= photo_share <= 1.0:
      raise ValueError(f'ct_bank: bank_photo_share={photo_share}: give the part of the examples cut from the '
                       'photographs, 0 (none) to 1 (all).')
    self.source, self.source_share, self.source_slices = source, float(source_share), int(source_slices)
    self.photo_share, self.photo_spans_hu = float(photo_share), tuple(float(t) for t in photo_spans_hu)
    self.seed, self.size, self.patch, self.num_examples = seed, size, patch, num_examples
    self.fractions = (float(lo), float(hi))
    self.params = dict(seed=seed, size=size, fov_mm=float(fov_mm), full_dose=float(full_dose),
                       lesion_prob=float(lesion_prob), noise_draws=int(noise_draws), texture_hu=texture_hu,
                       fov_range_mm=fov_range_mm, bone_scale=bone_scale)
    key = bank_key(seed, num_slices, size, fov_mm, full_dose, lesion_prob, noise_draws, texture_hu, fov_range_mm,
                   bone_scale)
    self.folder = os.path.join(os.path.expanduser(cache_dir), 'ct_bank', key)
    self.num_slices, self.workers = num_slices, workers
    self._bank = self._sources = self._photos = None
    self._source_folder, self._num_sources = None, 0  # found once (it reads bank_source) and kept for the grain workers

  def __len__(self) -> int:
    return self.num_examples

  @property
  def bank(self) -> list[dict[str, np.ndarray]]:
    if self._bank is None:
      build(self.folder, self.num_slices, self.params, self.workers)
      self._bank = [_load(os.path.join(self.folder, f'slice_{j}.npz')) for j in range(self.num_slices)]
    return self._bank

  @property
  def source_folder(self) -> str:
    if self._source_folder is None:
      objects = source_objects(self.source, self.source_slices, self.patch)
      key = source_key(objects, self.seed, self.params['full_dose'], self.params['noise_draws'])
      self._source_folder = os.path.join(os.path.dirname(self.folder), key)
      self._num_sources = len(objects)
    return self._source_folder

  def _banked(self, folder: str, count: int, params: dict) -> list[dict[str, np.ndarray]]:
    build(folder, count, params, self.workers, part='_build_sources')
    return [_load(os.path.join(folder, f'slice_{j}.npz')) for j in range(count)]

  @property
  def sources(self) -> list[dict[str, np.ndarray]]:
    """The banked slices of `bank_source` (module docstring); [] without one."""
    if self._sources is None:
      params = dict(self.params, source=self.source, source_slices=self.source_slices, patch=self.patch, size=512)
      self._sources = self._banked(self.source_folder, self._num_sources, params) if self.source else []
    return self._sources

  @property
  def photos(self) -> list[dict[str, np.ndarray]]:
    """The banked photographs (`data/photos.py`); [] without `photo_share`."""
    if self._photos is None:
      self._photos = []
      if self.photo_share:
        params = dict(self.params, kind='photos', photo_spans_hu=self.photo_spans_hu)
        objects = _objects(params)
        key = source_key(objects, self.seed, self.params['full_dose'], self.params['noise_draws'], kind='photos')
        self._photos = self._banked(os.path.join(os.path.dirname(self.folder), key), len(objects), params)
    return self._photos

  def __getstate__(self):  # grain workers load the bank themselves from the cache
    return {**self.__dict__, '_bank': None, '_sources': None, '_photos': None}

  def _pick(self, index: int, rng) -> dict[str, np.ndarray]:
    # The choice of a photograph or a source slice has its own stream, so that without them the examples are
    # the same as before they existed.
    if self.photo_share and np.random.default_rng([self.seed, index, 9]).random() < self.photo_share:
      return self.photos[int(rng.integers(len(self.photos)))]
    if self.source and (self.source_share >= 1.0 or
                        np.random.default_rng([self.seed, index, 7]).random() < self.source_share):
      return self.sources[int(rng.integers(len(self.sources)))]
    return self.bank[int(rng.integers(self.num_slices))]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, int(index), 2])
    s = self._pick(int(index), rng)
    k = int(rng.integers(len(s['noise'])))
    lo, hi = self.fractions
    f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    p, n = self.patch, s['reference'].shape[0]
    cy, cx = s['body'][rng.integers(len(s['body']))] if len(s['body']) else (n // 2, n // 2)
    top, left = int(np.clip(cy - p // 2, 0, n - p)), int(np.clip(cx - p // 2, 0, n - p))
    ref = s['reference'][top:top + p, left:left + p]
    low = ref + np.sqrt(acquisition.LOW_DOSE_FRACTION / f) * s['noise'][k, top:top + p, left:left + p]
    t = int(rng.integers(geometry.DIHEDRAL))
    turn = lambda x: np.ascontiguousarray(geometry.dihedral(x, t)).astype(np.float32)
    return {'hu': turn(ref), 'hu_low': turn(low), 'dose_fraction': np.float32(f)}

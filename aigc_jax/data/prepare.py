"""Writes a training dataset (TFDS, ArrayRecord) from users' scans or from the built-in phantom: the library
behind the `python -m aigc_jax.prepare` command (see that module for the flags).

De-identification: only pixels, spacing, modality and a salted hash of the patient (for the split and for
patient-level evaluation) are written. The salt is never written; pass your own salt (kept secret) to get
the same splits on a rerun. Files that cannot be used are skipped with a reason in
`<output>/<name>/prepare_report.json`; files there are numbered in the order of `find INPUT -type f | sort`
(paths are written only with `report_paths`, since folder names are often patient names or IDs).
"""

import collections
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile

import numpy as np

from aigc_jax.imaging import acquisition
from aigc_jax.imaging import geometry
from aigc_jax.data import phantom
from aigc_jax.data import records
from aigc_jax.data import scan_labels
from aigc_jax.imaging import scans

CT_RANGE = (-1024.0, 3071.0)  # 12-bit CT; values outside (e.g. −2048/−3024 beyond the scan circle) are clipped
SPLITS = ('train', 'validation', 'test')


def parse_spacing(text: str) -> tuple[float, ...]:
  if not text:
    return ()
  try:
    vals = tuple(float(v) for v in text.split(','))
  except ValueError:
    raise ValueError(f'--spacing={text!r}: give mm as "row,col" or "row,col,slice", e.g. 0.8,0.8') from None
  if len(vals) not in (2, 3) or min(vals) <= 0:
    raise ValueError(f'--spacing={text!r}: give 2 or 3 positive numbers (mm), e.g. 0.8,0.8 or 1,1,2.5')
  return vals


def patient_hash(key: str, salt: str) -> bytes:
  return hashlib.sha256(f'{salt}\x00{key}'.encode()).digest()


def assign_split(digest: bytes, val_fraction: float, test_fraction: float) -> str:
  """Whole patients go to one split, by a uniform number drawn from their salted hash."""
  u = int.from_bytes(digest[:8], 'big') / 2.0 ** 64
  return 'test' if u < test_fraction else 'validation' if u < test_fraction + val_fraction else 'train'


class _Stats:
  """Running intensity statistics of the training split (percentiles from a seeded subsample)."""

  def __init__(self):
    self.n, self.total, self.sq, self.lo, self.hi = 0, 0.0, 0.0, np.inf, -np.inf
    self.sample, self._rng = [], np.random.default_rng(0)

  def add(self, vol: np.ndarray):
    v = vol.astype(np.float64).ravel()
    self.n += v.size
    self.total, self.sq = self.total + v.sum(), self.sq + (v * v).sum()
    self.lo, self.hi = min(self.lo, v.min()), max(self.hi, v.max())
    self.sample.append(self._rng.choice(v, size=min(v.size, 20_000), replace=False))

  def result(self) -> dict[str, float]:
    if not self.n:
      return {}
    mean = self.total / self.n
    pct = np.percentile(np.concatenate(self.sample), [1, 5, 50, 95, 99])
    return {'mean': mean, 'std': float(np.sqrt(max(self.sq / self.n - mean * mean, 0.0))),
            'min': float(self.lo), 'max': float(self.hi),
            **{f'p{q}': float(x) for q, x in zip((1, 5, 50, 95, 99), pct)}}


def check_name(name: str):
  if not re.fullmatch(r'[a-z][a-z0-9_]*', name or ''):
    raise ValueError(f'--name={name!r}: use lower-case letters, digits and underscores, starting with a letter.')


def prepare_scans(*, input_dir: str, output: str, name: str, modality: str = 'CT', layout: str = '2d',
                  spacing: tuple[float, ...] = (), size: int = 256, val_fraction: float = 0.1,
                  test_fraction: float = 0.1, salt: str = '', report_paths: bool = False, labels: str = ''
                  ) -> dict:
  """Ingests every usable DICOM series / NIfTI volume under `input_dir`; returns the summary (also in the report).
  `labels`: a CSV of labels per file or folder (`aigc_jax/data/scan_labels.py`); each example then carries them.

  Never raises for a bad file: it is skipped with its reason. Raises ValueError/FileNotFoundError/
  FileExistsError for bad arguments, before anything is written.
  """
  check_name(name)
  if layout not in ('2d', '3d'):
    raise ValueError(f'--layout={layout!r}: use 2d (slices) or 3d (volumes).')
  if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
    raise ValueError('--val_fraction and --test_fraction must be >= 0 and leave some patients for training.')
  if os.path.exists(records.dataset_dir(output, name)):
    raise FileExistsError(f'{records.dataset_dir(output, name)} already exists: choose another --name or delete it.')
  label_names, label_table = scan_labels.read(labels) if labels else ((), {})
  files = scans.list_files(input_dir)
  series, skipped, problems = scans.find_series(files, input_dir, modality, layout)
  is_ct = modality.upper() == 'CT'
  salt = salt or secrets.token_hex(16)
  os.makedirs(os.path.join(output, name), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.prepare-', dir=os.path.join(output, name))
  try:
    volumes, stats, spacings, failed, used = [], _Stats(), [], [], set()
    patients = collections.defaultdict(set)
    for n, s in enumerate(series):
      digest = patient_hash(s.patient_key, salt)
      split = assign_split(digest, val_fraction, test_fraction)
      values = ()
      if label_names:
        values, why = scan_labels.of_series([os.path.relpath(files[i], input_dir) for i in s.files], label_table)
        if values is None:
          problems.append(f'series {n} ({len(s.files)} files): {why}')
          failed.append((s, why))
          continue
      try:
        vol = scans.load(s, files, skipped, layout)
        if is_ct:
          vol = np.clip(vol, *CT_RANGE)
        vol, sp = geometry.resample(vol, s.spacing, target=spacing, size=size,
                                    fill=CT_RANGE[0] if is_ct else float(vol.min()))
      except (scans.Skip, geometry.NoSpacing) as e:
        problems.append(f'series {n} ({len(s.files)} files): {e}')
        failed.append((s, e))
        continue
      path = os.path.join(tmp, f'{n}.npy')
      np.save(path, np.round(vol).astype(np.int16) if is_ct else vol)
      volumes.append((split, path, sp, int.from_bytes(digest[8:16], 'big') >> 1, len(vol), values))
      patients[split].add(digest)
      used.update(s.files)
      spacings.append(sp)
      if split == 'train':
        stats.add(vol)
    # Every file ends up used or with a reason: the files of a series left out here get the series' reason,
    # and a file with a reason (a slice left out of a 2-D series that was written) does not count as used.
    for s, e in failed:
      for i in s.files:
        if i not in used:
          skipped.setdefault(i, f'its series was left out: {e}')
    used -= skipped.keys()  # slices left out of a 2-D series that was written
    counts = {k: {'patients': len(patients[k]),
                  'volumes': sum(v[0] == k for v in volumes),
                  'examples': sum((v[4] if layout == '2d' else 1) for v in volumes if v[0] == k)}
              for k in SPLITS}
    summary = {
        'modality': modality.upper(), 'units': 'HU' if is_ct else 'stored values after the modality LUT',
        'layout': layout, 'size': size, 'target_spacing_mm': list(spacing), 'counts': counts,
        'spacing_mm': ({'median': np.median(spacings, 0).tolist(), 'min': np.min(spacings, 0).tolist(),
                        'max': np.max(spacings, 0).tolist()} if spacings else {}),
        'intensity_train': stats.result(),
        'files_seen': len(files), 'files_used': len(used), 'files_skipped': len(skipped),
        'series_skipped': len(problems),
    }
    if label_names:  # examples per label value and split: what a classifier's class balance will be
      summary['labels'] = _label_counts(volumes, label_names, layout)
    written = {k for k in SPLITS if counts[k]['examples']}
    report = {**summary, 'written_splits': sorted(written),
              'skip_reasons': dict(collections.Counter(skipped.values()).most_common()),
              'skipped_files': [{'file': (os.path.relpath(files[i], input_dir) if report_paths else i),
                                 'reason': r} for i, r in sorted(skipped.items())],
              'series_problems': problems,
              'series_notes': sorted({note for s in series for note in s.notes})}
    if written:
      dtype = np.int16 if is_ct else np.float32
      img_shape = ((size, size) if size else (None, None)) if layout == '2d' else (
          (None, size, size) if size else (None, None, None))
      features = {'image': _tensor(img_shape, dtype, encoding='zlib'), 'spacing': _tensor((3,), np.float32),
                  'patient': _tensor((), np.int64)}
      if layout == '2d':
        features.update(slice=_tensor((), np.int32), num_slices=_tensor((), np.int32))
      features.update({lab: _tensor((), np.int32) for lab in label_names})
      records.write(name, output, features,
                    {k: _scan_examples(volumes, k, layout, label_names) for k in SPLITS if k in written},
                    summary, description=f'{modality.upper()} scans prepared by aigc_jax.prepare')
    with open(os.path.join(output, name, 'prepare_report.json'), 'w') as f:
      json.dump(report, f, indent=1)
    return report
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _label_counts(volumes, label_names, layout) -> dict[str, dict[str, dict[str, int]]]:
  """{label: {split: {value: examples}}}."""
  out = {lab: {k: collections.Counter() for k in SPLITS} for lab in label_names}
  for split, _, _, _, num, values in volumes:
    for lab, value in zip(label_names, values):
      out[lab][split][str(value)] += num if layout == '2d' else 1
  return {lab: {k: dict(sorted(c.items())) for k, c in by.items()} for lab, by in out.items()}


def _tensor(shape, dtype, encoding='none'):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # zlib: scans compress about 2x and it is what TFDS needs for more than one unknown dimension.
  return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)


def _scan_examples(volumes, split: str, layout: str, label_names=()):
  def gen():
    for s, path, sp, patient, _, values in volumes:
      if s != split:
        continue
      vol = np.load(path)
      common = {'spacing': np.asarray(sp, np.float32), 'patient': np.int64(patient),
                **scan_labels.as_features(label_names, values)}
      if layout == '3d':
        yield {'image': vol, **common}
      else:
        for k, img in enumerate(vol):
          yield {'image': img, 'slice': np.int32(k), 'num_slices': np.int32(len(vol)), **common}
  return gen


def parse_counts(text: str) -> dict[str, int]:
  try:
    counts = {k: int(v) for k, v in (item.split(':') for item in text.split(','))}
  except ValueError:
    raise ValueError(f'--phantom_examples={text!r}: write split:count pairs, e.g. train:2000,test:256') from None
  if not counts or min(counts.values()) <= 0:
    raise ValueError(f'--phantom_examples={text!r}: every split needs a positive count.')
  return counts


def prepare_phantom(*, output: str, name: str, size: int, counts: dict[str, int], pairs: bool = False,
                    full_dose: float = acquisition.FULL_DOSE,
                    low_dose_fraction: float = acquisition.LOW_DOSE_FRACTION, fov_mm: float = 400.0,
                    seed: int = 0) -> dict:
  """Fixed splits of the built-in phantom. Split k (in the order given) uses seed `seed + k`, so 'train'
  with seed 0 holds exactly the first examples the online `phantom_ct` source (seed 0) yields."""
  check_name(name)
  sources = {split: phantom.PhantomCT(seed=seed + k, size=size, num_examples=n,
                                      dose=(full_dose, low_dose_fraction, fov_mm) if pairs else None)
             for k, (split, n) in enumerate(counts.items())}
  hu = lambda x: np.round(np.clip(x, -32768, 32767)).astype(np.int16)
  pixel = fov_mm / size

  def examples(src):
    def gen():
      for i in range(len(src)):
        ex = dict(src[i])
        out = {'image': hu(ex.pop('hu')), 'spacing': np.asarray([pixel, pixel, 0.0], np.float32)}
        if 'hu_low' in ex:
          out['low_dose'] = hu(ex.pop('hu_low'))
        yield {**out, **ex}
    return gen

  img = _tensor((size, size), np.int16, encoding='zlib')
  features = {'image': img, 'spacing': _tensor((3,), np.float32),
              'level': _tensor((), np.float32), 'lesion': _tensor((), np.int32),
              'lesion_kind': _tensor((), np.int32), 'lesion_center': _tensor((2,), np.float32),
              'lesion_radius': _tensor((), np.float32), 'lesion_contrast': _tensor((), np.float32)}
  if pairs:
    features['low_dose'] = img
  summary = {'modality': 'CT', 'units': 'HU', 'layout': '2d', 'size': size, 'source': 'phantom_ct',
             'seeds': {s: seed + k for k, s in enumerate(counts)},
             'counts': {s: {'examples': n} for s, n in counts.items()},
             'dose': {'full_dose': full_dose, 'low_dose_fraction': low_dose_fraction, 'unit': 'photons/mm²',
                      'fov_mm': fov_mm} if pairs else {}}
  records.write(name, output, features, {s: examples(src) for s, src in sources.items()}, summary,
                description='Built-in procedural CT phantom (aigc_jax.data.phantom)')
  return summary

"""Reading users' scans: DICOM series and NIfTI volumes → pixel volumes with spacing, nothing else.

Two passes. `find_series` reads headers only: it keeps axial slices of the requested modality (no scouts,
screen captures, burned-in text or coronal/sagittal views), groups DICOM slices into series (by
SeriesInstanceUID; a multi-frame object is a series of its own), orders them along the slice normal, checks
that they belong together, and notes a patient key for the split. `load` then decodes one series' pixels into a
float32 volume [slices, rows, cols] in the modality's units (HU for CT through the rescale, per frame for
Enhanced CT; MONOCHROME1 projection radiographs inverted so that denser is brighter).

Every file ends up in a series or in `skipped` with a reason, whatever pydicom or nibabel raise on it: each
header value, decode and conversion is read through a boundary that turns their errors into `Skip` naming the
attribute and the exception type. Sizes that headers claim are checked against the file before anything is
allocated, so a lying header cannot exhaust memory.

What leaves this module is pixels, spacing, modality and a patient key that `prepare` hashes with a salt
and then forgets. Names, IDs, dates, UIDs, institutions and file paths stay inside; a problem is described
by a reason that never quotes a header value or a path. Orientation: DICOM axial slices are kept as stored
(radiological: patient's right on the image left, anterior at the top); NIfTI volumes are turned into that
same view from their closest canonical (RAS+) orientation.
"""

import dataclasses
import math
import os
import warnings

import numpy as np

from aigc_jax.imaging import dicom_header as dh
from aigc_jax.imaging.dicom_header import Skip

NIFTI_SUFFIXES = ('.nii', '.nii.gz')
# Largest image one file may decode to: 512 × 512 × 2048 frames, 2 GiB as float32. A header claiming more is
# refused before anything is allocated.
MAX_VOXELS = 2 ** 29
_GZIP_MAX_RATIO = 1032  # deflate cannot do better, which bounds what a .nii.gz of a given size can hold

__all__ = ['MAX_VOXELS', 'NIFTI_SUFFIXES', 'Series', 'Skip', 'find_series', 'list_files', 'load', 'spaced_slices']


@dataclasses.dataclass
class Series:
  """One volume to ingest: where its slices are, in order, and what its header said."""
  kind: str                      # 'dicom' | 'nifti'
  files: list[int]               # indices into the sorted file list, in slice order (dicom)
  patient_key: str               # PatientID (or study/file) – hashed with a salt by `prepare`, never written
  modality: str
  spacing: tuple[float, float, float]  # (row, col, slice) in mm; slice 0 when unknown
  shape: tuple[int, int]         # (rows, cols)
  frame: int = -1                # which 3-D volume of a 4-D NIfTI (-1: the file is 3-D)
  notes: list[str] = dataclasses.field(default_factory=list)
  frames: list[int] = dataclasses.field(default_factory=list)  # frame order of a multi-frame DICOM object


def list_files(input_dir: str) -> list[str]:
  """Every file under `input_dir`, in a stable order (the order the skip report's numbers refer to)."""
  if not os.path.isdir(input_dir):
    raise FileNotFoundError(f'--input={input_dir!r} is not a folder; point it at the folder of DICOM/NIfTI files.')
  out = []
  for root, dirs, files in os.walk(input_dir):
    dirs.sort()
    out.extend(os.path.join(root, f) for f in sorted(files))
  return out


def _quiet_readers():
  import logging  # pylint: disable=g-import-not-at-top
  import pydicom  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  # pydicom's warnings quote offending header values (which can be names or dates) and file paths (folder
  # names are often patient names); nibabel's header checks quote header fields. Keep both off the logs:
  # the skip reasons say what matters. After the import, which sets pydicom's level itself.
  logging.getLogger('pydicom').setLevel(logging.CRITICAL)
  logging.getLogger('nibabel').setLevel(logging.CRITICAL)
  warnings.filterwarnings('ignore', module='pydicom')
  warnings.filterwarnings('ignore', module='nibabel')


def _nifti_patient(rel: str) -> str:
  # BIDS-style trees keep one subject per top folder (sub-01/anat/...); a flat folder: one file per patient.
  parts = rel.split(os.sep)
  return parts[0] if len(parts) > 1 else rel


def find_series(files: list[str], input_dir: str, modality: str, layout: str
                ) -> tuple[list[Series], dict[int, str], list[str]]:
  """Pass 1 over headers.

  Returns:
    (series, skipped, problems): the volumes to load; file index → reason for every file left out;
    series-level reasons ('series 3 (12 files): ...') for whole series left out.
  """
  _quiet_readers()
  skipped, problems, series = {}, [], []
  groups: dict[str, list[dh.Header]] = {}
  for i, path in enumerate(files):
    try:
      if path.lower().endswith(NIFTI_SUFFIXES):
        series.extend(_nifti_series(i, path, _nifti_patient(os.path.relpath(path, input_dir)), modality))
        continue
      h = dh.read_header(i, path, modality, MAX_VOXELS)
    except Skip as e:
      skipped[i] = str(e)
      continue
    # A multi-frame object holds its volume in its frames (copies of it are one group, so that they are
    # found to be duplicates); classic slices and single-frame enhanced objects are gathered by series.
    groups.setdefault(f'frames:{h.instance}' if h.frames > 1 else f'series:{h.series}', []).append(h)
  for n, members in enumerate(groups.values()):
    try:
      series.append(_order_series(members, layout, skipped))
    except Skip as e:
      problems.append(f'series {n} ({len(members)} files): {e}')
      for h in members:
        skipped.setdefault(h.index, f'its series was left out: {e}')
  return series, skipped, problems


def _nifti_series(i: int, path: str, patient: str, modality: str) -> list[Series]:
  """The volumes of one NIfTI file (one per time point of a 4-D file), with shape and spacing as `load` shows
  them."""
  _, shape, zooms, ornt = _nifti_open(path)
  frames = range(shape[3]) if len(shape) == 4 else [-1]
  # Canonical axis ornt[k, 0] is stored axis k: shape and voxel sizes follow the axes, not the file order.
  canon_shape, canon_zooms = [1, 1, 1], [0.0, 0.0, 0.0]
  for k in range(3):
    canon_shape[int(ornt[k, 0])] = (shape + (1,))[k]
    canon_zooms[int(ornt[k, 0])] = (zooms + (0.0,))[k]
  # The radiological view has rows along canonical y and columns along x (see `_nifti_pixels`).
  return [Series('nifti', [i], patient, modality.upper(), (canon_zooms[1], canon_zooms[0], canon_zooms[2]),
                 (canon_shape[1], canon_shape[0]), frame=f) for f in frames]


def _nifti_open(path: str):
  """(image, shape, voxel sizes, orientation to canonical) from the header, without reading the data; Skip
  when the header is damaged or claims more data than the file can hold."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  try:
    img = nib.load(path)  # header only: nibabel reads data lazily
    shape = tuple(int(d) for d in img.shape)
    zooms = tuple(abs(float(z)) for z in img.header.get_zooms()[:3])
    need = int(getattr(img.dataobj, 'offset', 0)) + math.prod(shape) * np.dtype(img.get_data_dtype()).itemsize
    ornt = nib.orientations.io_orientation(img.affine)
  except Exception as e:  # whatever a damaged header makes nibabel raise
    raise Skip(f'unreadable NIfTI ({type(e).__name__})') from None
  if len(shape) not in (2, 3, 4):
    raise Skip(f'{len(shape)}-D NIfTI; only 2-D, 3-D and 4-D (a volume per time point) are read')
  if min(shape) < 1:
    raise Skip('NIfTI with an empty dimension (damaged dim field?)')
  if not all(math.isfinite(z) for z in zooms):
    raise Skip('NIfTI voxel sizes are not finite numbers (damaged pixdim field?)')
  if np.isnan(ornt).any():
    raise Skip('NIfTI affine without a usable orientation (damaged qform/sform?)')
  voxels = math.prod(shape[:3])
  if voxels > MAX_VOXELS:
    raise Skip(f'NIfTI volume of {voxels} voxels, more than the {MAX_VOXELS} one volume may hold '
               '(damaged dim field?)')
  size = os.path.getsize(path)
  if need > (_GZIP_MAX_RATIO * size if path.lower().endswith('.gz') else size):
    raise Skip('NIfTI header claims more data than the file holds (a truncated file or a damaged dim field)')
  return img, shape, zooms, ornt


def _nifti_pixels(path: str, frame: int) -> np.ndarray:
  """One volume of a NIfTI file in the radiological view [slices, rows, cols]."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  img, _, _, ornt = _nifti_open(path)  # checked again: the file may have changed since pass 1
  try:  # only this frame is read (and reoriented), not the whole 4-D file per time point
    data = np.asarray(img.dataobj[..., frame] if frame >= 0 else img.dataobj, np.float32)
  except Exception as e:  # truncated or corrupt data: zlib, EOF, short reads...
    raise Skip(f'unreadable NIfTI data ({type(e).__name__})') from None
  data = nib.orientations.apply_orientation(data.reshape(data.shape + (1,) * (3 - data.ndim)), ornt)
  # Canonical voxel axes point +x to the patient's right, +y anterior, +z superior. The radiological view
  # wants columns running toward the patient's left and rows toward posterior: reverse x and y.
  return np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))


def _order_series(members: list[dh.Header], layout: str, skipped: dict[int, str]) -> Series:
  """Deduplicates instances, orders slices (or frames) along the normal, and checks they are one volume."""
  seen, unique = set(), []
  for h in members:
    if h.instance in seen:
      skipped[h.index] = 'duplicate of another file of the same DICOM instance'
      continue
    seen.add(h.instance)
    unique.append(h)
  first = unique[0]
  shapes = {h.shape for h in unique}
  if len(shapes) > 1:
    raise Skip(f'slices of different sizes {sorted(shapes)}')
  spacing = first.spacing or (0.0, 0.0)
  if any(h.spacing and max(abs(a - b) for a, b in zip(h.spacing, spacing)) > 1e-3 for h in unique):
    raise Skip('slices with different pixel spacings')
  notes = []
  if all(h.orientation is not None and h.positions is not None for h in unique):
    orient = first.orientation
    if any(np.abs(h.orientation - orient).max() > 1e-3 for h in unique):
      raise Skip('slices with different orientations')
    normal = np.cross(orient[:3], orient[3:])
    pos = np.concatenate([h.positions for h in unique]) @ normal
    order = np.argsort(pos, kind='stable')
    gaps = np.diff(pos[order])
    if len(gaps) and np.min(gaps) < 1e-3:
      raise Skip('two different slices at the same position (several acquisitions in one series?)')
    thick = float(np.median(gaps)) if len(gaps) else first.thickness
    if len(gaps) and np.max(np.abs(gaps - thick)) > 0.1 * thick:
      if layout == '3d':
        raise Skip('uneven slice spacing (missing or overlapping slices); a 3-D volume needs even spacing')
      notes.append('uneven slice spacing')
  elif first.frames > 1:
    order, thick = np.arange(first.frames), first.thickness
    notes.append('no frame positions: frames kept in stored order')
  else:
    order = np.argsort([h.number for h in unique], kind='stable')
    thick = first.thickness
    notes.append('no slice positions: ordered by InstanceNumber')
  patient = first.patient
  if not patient:
    notes.append('no PatientID or StudyInstanceUID: the series is its own patient for the split')
    patient = first.series
  if first.frames > 1:  # one multi-frame object: its frames are the slices
    return Series('dicom', [first.index], patient, first.modality, (spacing[0], spacing[1], thick),
                  first.shape, notes=notes, frames=[int(k) for k in order])
  return Series('dicom', [unique[j].index for j in order], patient, first.modality,
                (spacing[0], spacing[1], thick), first.shape, notes=notes)


def load(s: Series, files: list[str], skipped: dict[int, str], layout: str) -> np.ndarray:
  """Pass 2: the series' pixels as float32 [slices, rows, cols]; raises Skip if nothing is usable.

  In '2d' layout an unreadable slice is left out (and noted in `skipped`); in '3d' it fails the volume.
  A file that cannot be read at all gets its reason in `skipped`.
  """
  if s.kind == 'nifti':
    try:
      vol = _nifti_pixels(files[s.files[0]], s.frame)
    except Skip as e:
      skipped.setdefault(s.files[0], str(e))
      raise
    return _finite(vol, s.notes)
  slices = []
  for i in s.files:
    try:
      x = dh.read_pixels(files[i], s.modality, MAX_VOXELS, s.frames)
      if x.shape[1:] != tuple(s.shape):
        raise Skip(f'decoded pixels of size {x.shape[1:]}, not the {tuple(s.shape)} its header claims')
      slices.append(x)
    except Skip as e:
      skipped[i] = str(e)
      if layout == '3d':
        raise Skip(f'a slice could not be read: {e}') from None
  if not slices:
    raise Skip('no readable slice')
  return _finite(np.concatenate(slices, axis=0), s.notes)


def _finite(vol: np.ndarray, notes: list[str]) -> np.ndarray:
  """NaN/inf voxels (float NIfTI or DICOM) set to the volume's finite range: they would poison statistics."""
  ok = np.isfinite(vol)
  if ok.all():
    return vol
  if not ok.any():
    raise Skip('no finite voxel value (all NaN or infinite)')
  lo, hi = float(vol[ok].min()), float(vol[ok].max())
  note = 'non-finite voxels (NaN/inf) set to the finite minimum/maximum'
  if note not in notes:
    notes.append(note)
  return np.nan_to_num(vol, nan=lo, posinf=hi, neginf=lo)



def spaced_slices(input_dir: str, max_slices: int, modality: str = 'CT'
                  ) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
  """(name, slice [rows, cols] in the modality's units, (row, col) spacing in mm, 0 when unknown) of up to
  `max_slices` evenly spaced slices of every readable series under `input_dir`. Names say where a slice is
  (series_<n>_slice_<k>, n in the order series are found), never anything from its header."""
  files = list_files(input_dir)
  found, skipped, _ = find_series(files, input_dir, modality, '2d')
  if not found:
    raise ValueError(f'--input={input_dir!r}: no {modality} series or NIfTI volume found ({len(files)} files, '
                     f'{len(skipped)} skipped); see the reasons with python -m aigc_jax.prepare.')
  out = []
  for n, s in enumerate(found):
    try:
      vol = load(s, files, skipped, '2d')
    except Skip:
      continue
    for k in np.unique(np.linspace(0, len(vol) - 1, min(max_slices, len(vol))).round().astype(int)):
      out.append((f'series_{n}_slice_{k}', vol[k], (float(s.spacing[0]), float(s.spacing[1]))))
  if not out:
    raise ValueError(f'--input={input_dir!r}: no series could be read (see python -m aigc_jax.prepare).')
  return out

"""Reading users' scans: DICOM series and NIfTI volumes → pixel volumes with spacing, nothing else.

Two passes. `find_series` reads headers only: it groups DICOM slices into series (by SeriesInstanceUID),
orders them along the slice normal, checks that they belong together, and notes a patient key for the split.
`load` then decodes one series' pixels into a float32 volume [slices, rows, cols] in the modality's units
(HU for CT via RescaleSlope/Intercept; MONOCHROME1 radiographs inverted so that denser is brighter).

What leaves this module is pixels, spacing, modality and a patient key that `prepare` hashes with a salt
and then forgets. Names, IDs, dates, UIDs, institutions and file paths stay inside; a problem is described
by a reason that never quotes a header value or a path. Orientation: DICOM axial slices are kept as stored
(radiological: patient's right on the image left, anterior at the top); NIfTI volumes are turned into that
same view from their closest canonical (RAS+) orientation.
"""

import dataclasses
import os
import warnings

import numpy as np

NIFTI_SUFFIXES = ('.nii', '.nii.gz')


class Skip(Exception):
  """A file or series that is left out; the message is the reason, free of identifiers."""


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


def list_files(input_dir: str) -> list[str]:
  """Every file under `input_dir`, in a stable order (the order the skip report's numbers refer to)."""
  if not os.path.isdir(input_dir):
    raise FileNotFoundError(f'--input={input_dir!r} is not a folder; point it at the folder of DICOM/NIfTI files.')
  out = []
  for root, dirs, files in os.walk(input_dir):
    dirs.sort()
    out.extend(os.path.join(root, f) for f in sorted(files))
  return out


def _quiet_pydicom():
  import logging  # pylint: disable=g-import-not-at-top
  # pydicom's warnings quote offending header values (which can be names or dates): keep them off the logs.
  logging.getLogger('pydicom').setLevel(logging.CRITICAL)
  warnings.filterwarnings('ignore', module='pydicom')


def _nifti_patient(rel: str) -> str:
  # BIDS-style trees keep one subject per top folder (sub-01/anat/...); a flat folder: one file per patient.
  parts = rel.split(os.sep)
  return parts[0] if len(parts) > 1 else rel


def _dicom_header(path: str):
  import pydicom  # pylint: disable=g-import-not-at-top
  try:
    return pydicom.dcmread(path, stop_before_pixels=True)
  except pydicom.errors.InvalidDicomError:
    raise Skip('not a DICOM or NIfTI file') from None
  except Exception as e:  # truncated or malformed headers raise many types
    raise Skip(f'unreadable DICOM header ({type(e).__name__})') from None


def find_series(files: list[str], input_dir: str, modality: str, layout: str
                ) -> tuple[list[Series], dict[int, str], list[str]]:
  """Pass 1 over headers.

  Returns:
    (series, skipped, problems): the volumes to load; file index → reason for every file left out;
    series-level reasons ('series 3 (12 files): ...') for whole series left out.
  """
  _quiet_pydicom()
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  skipped, problems, series = {}, [], []
  groups: dict[str, list[tuple[int, object]]] = {}
  for i, path in enumerate(files):
    rel = os.path.relpath(path, input_dir)
    if path.lower().endswith(NIFTI_SUFFIXES):
      try:
        img = nib.load(path)
        shape, zooms = img.shape, img.header.get_zooms()
      except Exception as e:
        skipped[i] = f'unreadable NIfTI ({type(e).__name__})'
        continue
      if len(shape) not in (2, 3, 4):
        skipped[i] = f'{len(shape)}-D NIfTI; only 2-D, 3-D and 4-D (a volume per time point) are read'
        continue
      frames = range(shape[3]) if len(shape) == 4 else [-1]
      zooms = tuple(float(z) for z in zooms[:3]) + (0.0,) * (3 - min(len(zooms), 3))
      for f in frames:
        series.append(Series('nifti', [i], _nifti_patient(rel), modality.upper(),
                             (zooms[1], zooms[0], zooms[2]), (shape[1], shape[0]), frame=f))
      continue
    try:
      ds = _dicom_header(path)
    except Skip as e:
      skipped[i] = str(e)
      continue
    if 'SOPClassUID' not in ds:  # pydicom reads a cut-off header without complaint, up to where it ends
      skipped[i] = 'incomplete DICOM header (no SOP class: a truncated or damaged file?)'
      continue
    if 'Rows' not in ds or 'Columns' not in ds:
      sop = getattr(ds.get('SOPClassUID'), 'name', 'unknown SOP class')
      skipped[i] = f'no image in this DICOM object ({sop}, modality {ds.get("Modality", "?")})'
      continue
    if str(ds.get('Modality', '')).upper() != modality.upper():
      skipped[i] = f'modality {ds.get("Modality", "none")}, not the requested {modality} (--modality)'
      continue
    if int(ds.get('SamplesPerPixel', 1)) != 1:
      skipped[i] = f'colour image ({ds.get("PhotometricInterpretation", "?")}), not a grayscale scan'
      continue
    groups.setdefault(str(ds.get('SeriesInstanceUID', f'no-series-{i}')), []).append((i, ds))
  for n, members in enumerate(groups.values()):
    try:
      series.append(_order_series(members, layout, skipped))
    except Skip as e:
      problems.append(f'series {n} ({len(members)} files): {e}')
      for i, _ in members:
        skipped.setdefault(i, f'its series was left out: {e}')
  return series, skipped, problems


def _order_series(members, layout: str, skipped: dict[int, str]) -> Series:
  """Deduplicates instances, orders slices along the normal, and checks the series is one volume."""
  seen, unique = set(), []
  for i, ds in members:
    uid = str(ds.get('SOPInstanceUID', i))
    if uid in seen:
      skipped[i] = 'duplicate of another file of the same DICOM instance'
      continue
    seen.add(uid)
    unique.append((i, ds))
  first = unique[0][1]
  shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in unique}
  if len(shapes) > 1:
    raise Skip(f'slices of different sizes {sorted(shapes)}')
  spacing = [float(v) for v in first.get('PixelSpacing', first.get('ImagerPixelSpacing', [0.0, 0.0]))]
  if any(abs(float(a) - b) > 1e-3 for _, ds in unique
         for a, b in zip(ds.get('PixelSpacing', spacing), spacing)):
    raise Skip('slices with different pixel spacings')
  notes = []
  if all('ImagePositionPatient' in ds and 'ImageOrientationPatient' in ds for _, ds in unique):
    orient = np.array([float(v) for v in first.ImageOrientationPatient])
    if any(np.abs(np.array([float(v) for v in ds.ImageOrientationPatient]) - orient).max() > 1e-3
           for _, ds in unique):
      raise Skip('slices with different orientations')
    normal = np.cross(orient[:3], orient[3:])
    pos = np.array([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for _, ds in unique])
    order = np.argsort(pos, kind='stable')
    pos = pos[order]
    gaps = np.diff(pos)
    if len(gaps) and np.min(gaps) < 1e-3:
      raise Skip('two different slices at the same position (several acquisitions in one series?)')
    thick = float(np.median(gaps)) if len(gaps) else float(first.get('SliceThickness', 0.0) or 0.0)
    if len(gaps) and np.max(np.abs(gaps - thick)) > 0.1 * thick:
      if layout == '3d':
        raise Skip('uneven slice spacing (missing or overlapping slices); a 3-D volume needs even spacing')
      notes.append('uneven slice spacing')
  else:
    order = np.argsort([int(ds.get('InstanceNumber', 0) or 0) for _, ds in unique], kind='stable')
    thick = float(first.get('SliceThickness', 0.0) or 0.0)
    notes.append('no slice positions: ordered by InstanceNumber')
  patient = str(first.get('PatientID', '') or first.get('StudyInstanceUID', '') or '')
  if not patient:
    notes.append('no PatientID or StudyInstanceUID: the series is its own patient for the split')
    patient = str(first.get('SeriesInstanceUID', unique[0][0]))
  files = [unique[j][0] for j in order]
  return Series('dicom', files, patient, str(first.get('Modality', '')).upper(),
                (spacing[0], spacing[1], thick), shapes.pop(), notes=notes)


def _dicom_pixels(path: str) -> np.ndarray:
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import pixels  # pylint: disable=g-import-not-at-top
  try:
    ds = pydicom.dcmread(path)
  except Exception as e:
    raise Skip(f'unreadable DICOM ({type(e).__name__})') from None
  meta = getattr(ds, 'file_meta', None)
  syntax = meta.get('TransferSyntaxUID') if meta is not None else None
  try:
    arr = ds.pixel_array
  except Exception as e:
    if syntax is not None and syntax.is_compressed:
      raise Skip(f'compressed pixel data ({syntax.name}) that no installed decoder reads; '
                 'install pylibjpeg with pylibjpeg-libjpeg/-openjpeg, or gdcm') from None
    raise Skip(f'unreadable or truncated pixel data ({type(e).__name__})') from None
  out = np.asarray(pixels.apply_modality_lut(arr, ds), np.float32)  # RescaleSlope/Intercept → HU for CT
  if str(ds.get('PhotometricInterpretation', '')) == 'MONOCHROME1':
    out = out.max() + out.min() - out  # stored with white = low values; make denser = brighter
  return out if out.ndim == 3 else out[None]  # multi-frame objects carry their slices as frames


def load(s: Series, files: list[str], skipped: dict[int, str], layout: str) -> np.ndarray:
  """Pass 2: the series' pixels as float32 [slices, rows, cols]; raises Skip if nothing is usable.

  In '2d' layout an unreadable slice is left out (and noted in `skipped`); in '3d' it fails the volume.
  """
  if s.kind == 'nifti':
    import nibabel as nib  # pylint: disable=g-import-not-at-top
    try:
      img = nib.as_closest_canonical(nib.load(files[s.files[0]]))
      data = np.asarray(img.dataobj[..., s.frame] if s.frame >= 0 else img.dataobj, np.float32)
    except Exception as e:
      raise Skip(f'unreadable NIfTI data ({type(e).__name__})') from None
    if data.ndim == 2:
      data = data[..., None]
    # Canonical voxel axes point +x to the patient's right, +y anterior, +z superior. The radiological view
    # wants columns running toward the patient's left and rows toward posterior: reverse x and y.
    return np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))
  slices = []
  for i in s.files:
    try:
      slices.append(_dicom_pixels(files[i]))
    except Skip as e:
      skipped[i] = str(e)
      if layout == '3d':
        raise Skip(f'a slice could not be read: {e}') from None
  if not slices:
    raise Skip('no readable slice')
  shapes = {x.shape[1:] for x in slices}
  if len(shapes) > 1:
    raise Skip(f'decoded slices of different sizes {sorted(shapes)}')
  return np.concatenate(slices, axis=0)

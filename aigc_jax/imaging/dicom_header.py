"""DICOM headers and pixels, read so that no damaged file can stop an ingest.

pydicom converts values lazily, so a flipped byte surfaces wherever a value is first touched: a
`NotImplementedError` for a damaged VR, a `ValueError` for a DS that is not a number, a `TypeError` for
two values where one belongs. Every value is therefore read through `get`, which turns whatever pydicom (or the
conversion) raises into `Skip` naming the attribute and the exception type, never the value (it may be a name).

What counts as a scan: the modality's own image storage classes (CT: classic, enhanced, legacy converted; MR
likewise), never Secondary Capture (dose screens and other screen grabs, often with the name burned in), no
scouts/localizers, nothing marked BurnedInAnnotation YES, and only axial slices (within 45° of axial: gantry
tilts pass, coronal/sagittal views and reformats do not), since everything downstream treats slices as axial.

Enhanced (multi-frame) objects keep pixel spacing, orientation, positions and rescale in functional groups:
per frame (PerFrameFunctionalGroupsSequence) or shared by all (SharedFunctionalGroupsSequence). They are read
from there, per frame where given, before the top-level attributes classic objects use.
"""

import dataclasses
import math
import os
import re

import numpy as np

SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7'  # and its .1–.4 multi-frame variants
IMAGE_CLASSES = {  # modality → the SOP classes that hold its images
    'CT': ('1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.2.1', '1.2.840.10008.5.1.4.1.1.2.2'),
    'MR': ('1.2.840.10008.5.1.4.1.1.4', '1.2.840.10008.5.1.4.1.1.4.1', '1.2.840.10008.5.1.4.1.1.4.4'),
}
NOT_A_SCAN = ('LOCALIZER', 'SCREEN SAVE')  # ImageType values of scouts and of captured screens (GE dose pages)
# MONOCHROME1 only tells a viewer to show low values white. For radiographs the stored values are what is
# shown, so they are inverted (denser = brighter); CT, MR and others keep the values of their modality LUT.
RADIOGRAPHY = ('CR', 'DX', 'MG', 'IO', 'PX', 'RG', 'XA', 'RF')
MAX_TILT_DEG = 45.0


class Skip(Exception):
  """A file or series that is left out; the message is the reason, free of identifiers."""


class BadValue(ValueError):
  """A header value of the wrong form; the message is ours and never quotes the value."""


@dataclasses.dataclass
class Header:
  """What pass 1 keeps of one DICOM file: plain values, no pydicom objects (10,000 of them stay small)."""
  index: int                     # the file's number in the sorted file list
  series: str                    # SeriesInstanceUID, or a stand-in of its own
  instance: str                  # SOPInstanceUID, or a stand-in of its own
  number: int                    # InstanceNumber
  patient: str                   # PatientID or StudyInstanceUID; '' when neither
  modality: str
  shape: tuple[int, int]
  frames: int
  spacing: tuple[float, float] | None
  thickness: float
  orientation: np.ndarray | None  # (6,), the same for every frame
  positions: np.ndarray | None    # (frames, 3); None when not every frame has one


def get(ds, keyword: str, convert=None, default=None):
  """`ds.<keyword>` through `convert`; `default` when absent or empty; Skip naming the attribute when damaged."""
  if ds is None:
    return default
  try:
    if keyword not in ds:
      return default
    value = ds[keyword].value
    if value is None or (hasattr(value, '__len__') and len(value) == 0):
      return default
    return convert(value) if convert else value
  except Exception as e:  # whatever a damaged element makes pydicom or the conversion raise
    detail = f': {e}' if isinstance(e, BadValue) else ''
    raise Skip(f'damaged DICOM attribute {keyword} ({type(e).__name__}{detail})') from None


def _many(v) -> list:
  return [v] if isinstance(v, (str, bytes)) or not hasattr(v, '__len__') else list(v)


def _scalar(v):
  items = _many(v)
  if len(items) != 1:
    raise BadValue(f'{len(items)} values where one is expected')
  return items[0]


def _text(v) -> str:
  v = _scalar(v)
  return (v.decode('ascii', 'replace') if isinstance(v, bytes) else str(v)).strip()


def _texts(v) -> list[str]:
  return [_text(x) for x in _many(v)]


def _number(v) -> float:
  f = float(_scalar(v))
  if not math.isfinite(f):
    raise BadValue('not a finite number')
  return f


def _int(v) -> int:
  f = _number(v)
  if f != int(f):
    raise BadValue('not a whole number')
  return int(f)


def _count(v) -> int:
  n = _int(v)
  if n < 1:
    raise BadValue('not a positive number')
  return n


def _numbers(n: int):
  def convert(v) -> np.ndarray:
    items = _many(v)
    if len(items) != n:
      raise BadValue(f'{len(items)} values where {n} are expected')
    return np.array([_number(x) for x in items])
  return convert


def _first(sequence):
  return sequence[0]


def _code(text: str) -> str:
  """A code string (Modality, PhotometricInterpretation) fit for a reason: damaged bytes are not quoted."""
  return text if re.fullmatch(r'[A-Z0-9_ ]{1,16}', text) else ('none' if not text else 'unrecognised')


def _sop_name(sop: str) -> str:
  from pydicom.uid import UID  # pylint: disable=g-import-not-at-top
  name = UID(sop).name
  return name if name != sop else 'an unregistered SOP class'


def _read(path: str, header_only: bool):
  import pydicom  # pylint: disable=g-import-not-at-top
  try:
    return pydicom.dcmread(path, stop_before_pixels=header_only)
  except pydicom.errors.InvalidDicomError:
    raise Skip('not a DICOM or NIfTI file') from None
  except Exception as e:  # truncated or malformed files raise many types
    raise Skip(f'unreadable DICOM {"header" if header_only else "file"} ({type(e).__name__})') from None


def _syntax(ds):
  from pydicom.uid import UID  # pylint: disable=g-import-not-at-top
  text = get(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', _text, '')
  if not text:
    raise Skip('no TransferSyntaxUID in the file meta information (a damaged or incomplete file?)')
  syntax = UID(text)
  if not syntax.is_transfer_syntax:
    raise Skip('TransferSyntaxUID is not a transfer syntax (damaged file meta information?)')
  return syntax


def _image(ds, modality: str) -> tuple[int, int, int]:
  """(rows, cols, frames) of an image of the requested modality that is a scan; Skip otherwise."""
  sop = get(ds, 'SOPClassUID', _text, '')
  if not sop:  # pydicom reads a cut-off header without complaint, up to where it ends
    raise Skip('incomplete DICOM header (no SOP class: a truncated or damaged file?)')
  rows, cols = get(ds, 'Rows', _count), get(ds, 'Columns', _count)
  mod = get(ds, 'Modality', _text, '').upper()
  if rows is None or cols is None:
    raise Skip(f'no image in this DICOM object ({_sop_name(sop)}, modality {_code(mod)})')
  if mod != modality.upper():
    raise Skip(f'modality {_code(mod)}, not the requested {modality} (--modality)')
  if get(ds, 'SamplesPerPixel', _int, 1) != 1:
    raise Skip(f'colour image ({_code(get(ds, "PhotometricInterpretation", _text, ""))}), not a grayscale scan')
  if sop == SECONDARY_CAPTURE or sop.startswith(SECONDARY_CAPTURE + '.'):
    raise Skip('Secondary Capture object: a screen capture (e.g. a dose report), not a scan; text may be '
               'burned into its pixels')
  if sop not in IMAGE_CLASSES.get(mod, (sop,)):
    raise Skip(f'{_sop_name(sop)} is not a {mod} image storage SOP class')
  image_type = [t.upper() for t in get(ds, 'ImageType', _texts, [])]
  for value in NOT_A_SCAN:
    if value in image_type:
      raise Skip(f'ImageType {value}: a scout/localizer or a captured screen, not a scan')
  if get(ds, 'BurnedInAnnotation', _text, '').upper() == 'YES':
    raise Skip('BurnedInAnnotation YES: text, possibly identifying, burned into the pixels')
  return rows, cols, get(ds, 'NumberOfFrames', _count, 1)


def _check_size(ds, shape: tuple[int, int, int], max_voxels: int, available_bytes: int | None):
  """Refuses, before anything is allocated, more than `max_voxels` (or as many bytes as their float32 copy
  takes: decoders allocate the claimed size before they find out it is wrong), or more bytes than the file
  holds (`available_bytes`, known for native pixel data)."""
  voxels = math.prod(shape)
  stored = math.ceil(voxels * get(ds, 'BitsAllocated', _count, 1) / 8)
  if voxels > max_voxels or stored > 4 * max_voxels:
    raise Skip(f'header claims {voxels} voxels ({stored} bytes), more than the {max_voxels} voxels (as float32, '
               f'{4 * max_voxels} bytes) one file may hold (damaged Rows, Columns, NumberOfFrames or BitsAllocated?)')
  if available_bytes is not None and stored > available_bytes:
    raise Skip('header claims more pixel data than the file holds (damaged Rows, Columns, NumberOfFrames or '
               'BitsAllocated, or a truncated file)')


def _groups(ds, frames: int):
  """(shared functional groups, per-frame functional groups) of an enhanced object; (None, []) if classic."""
  shared = get(ds, 'SharedFunctionalGroupsSequence', _first)
  per_frame = get(ds, 'PerFrameFunctionalGroupsSequence', list, [])
  if per_frame and len(per_frame) != frames:
    raise Skip('PerFrameFunctionalGroupsSequence does not hold one item per frame (damaged?)')
  return shared, per_frame


def _group_value(ds, groups, sequence: str, keyword: str, convert):
  """A value from the frame's own functional group, else the shared one, else the top level (classic)."""
  for g in groups:
    value = get(get(g, sequence, _first), keyword, convert)
    if value is not None:
      return value
  return get(ds, keyword, convert)


def _rescale(ds, shared, per_frame, frames: int):
  """Per-frame (slopes, intercepts) of the modality LUT; None when a ModalityLUTSequence (a table) applies."""
  slopes, intercepts = [], []
  for item in per_frame or [None]:
    groups = (item, shared)
    slopes.append(_group_value(ds, groups, 'PixelValueTransformationSequence', 'RescaleSlope', _number))
    intercepts.append(_group_value(ds, groups, 'PixelValueTransformationSequence', 'RescaleIntercept', _number))
  if all(s is None and b is None for s, b in zip(slopes, intercepts)) and get(ds, 'ModalityLUTSequence'):
    return None
  slopes = np.array([1.0 if s is None else s for s in slopes], np.float32)
  intercepts = np.array([0.0 if b is None else b for b in intercepts], np.float32)
  if np.any(slopes == 0):
    raise Skip('RescaleSlope of zero (damaged?)')
  return np.broadcast_to(slopes, (frames,)), np.broadcast_to(intercepts, (frames,))


def _check_axial(orientation: np.ndarray):
  r, c = orientation[:3], orientation[3:]
  if max(abs(np.linalg.norm(r) - 1), abs(np.linalg.norm(c) - 1), abs(r @ c)) > 0.02:
    raise Skip('ImageOrientationPatient is not two perpendicular unit vectors (damaged?)')
  if abs(np.cross(r, c)[2]) < math.cos(math.radians(MAX_TILT_DEG)):
    raise Skip(f'not an axial image (a coronal or sagittal view, or tilted more than {MAX_TILT_DEG:.0f}°): '
               'slices are read as axial')


def read_header(index: int, path: str, modality: str, max_voxels: int) -> Header:
  """Pass 1: the header of one file, if it is a scan of `modality` that can be read; Skip with the reason."""
  ds = _read(path, header_only=True)
  rows, cols, frames = _image(ds, modality)
  syntax = _syntax(ds)
  # Native pixel data cannot be larger than the file; compressed (or deflated) data only has the voxel cap.
  native = not (syntax.is_compressed or syntax.is_deflated)
  try:
    size = os.path.getsize(path) if native else None
  except OSError as e:  # gone or unreadable since it was listed; the message would quote the path
    raise Skip(f'file vanished or unreadable ({type(e).__name__})') from None
  _check_size(ds, (frames, rows, cols), max_voxels, size)
  shared, per_frame = _groups(ds, frames)
  _rescale(ds, shared, per_frame, frames)  # a damaged rescale skips the file here, not its series later
  items = per_frame or [None]
  spacing = _group_value(ds, (items[0], shared), 'PixelMeasuresSequence', 'PixelSpacing', _numbers(2))
  if spacing is None:
    spacing = get(ds, 'ImagerPixelSpacing', _numbers(2))  # projection radiographs
  if spacing is not None and min(spacing) <= 0:
    raise Skip('PixelSpacing is not two positive numbers (damaged?)')
  thickness = _group_value(ds, (items[0], shared), 'PixelMeasuresSequence', 'SliceThickness', _number) or 0.0
  if thickness < 0:
    raise Skip('negative SliceThickness (damaged?)')
  orients = [_group_value(ds, (item, shared), 'PlaneOrientationSequence', 'ImageOrientationPatient',
                          _numbers(6)) for item in items]
  orientation = orients[0]
  if orientation is not None:
    if any(o is None or np.abs(o - orientation).max() > 1e-3 for o in orients):
      raise Skip('frames with different orientations')
    _check_axial(orientation)
  positions = [_group_value(ds, (item, shared), 'PlanePositionSequence', 'ImagePositionPatient', _numbers(3))
               for item in items]
  positions = None if any(p is None for p in positions) or len(positions) != frames else np.stack(positions)
  return Header(index=index, series=get(ds, 'SeriesInstanceUID', _text, '') or f'no-series-{index}',
                instance=get(ds, 'SOPInstanceUID', _text, '') or f'file-{index}',
                number=get(ds, 'InstanceNumber', _int, 0),
                patient=get(ds, 'PatientID', _text, '') or get(ds, 'StudyInstanceUID', _text, ''),
                modality=modality.upper(), shape=(rows, cols), frames=frames,
                spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
                thickness=float(thickness), orientation=orientation, positions=positions)


def read_pixels(path: str, modality: str, max_voxels: int, order: list[int]) -> np.ndarray:
  """Pass 2: one file's frames as float32 [frames, rows, cols] in the modality's units, in `order` if given."""
  from pydicom import pixels  # pylint: disable=g-import-not-at-top
  ds = _read(path, header_only=False)
  syntax = _syntax(ds)
  encapsulated = syntax.is_encapsulated
  data = None if encapsulated else get(ds, 'PixelData')
  rows, cols, frames = _image(ds, modality)
  _check_size(ds, (frames, rows, cols), max_voxels, None if data is None else len(data))
  if order and sorted(order) != list(range(frames)):
    raise Skip('NumberOfFrames differs from the first reading of the file')
  shared, per_frame = _groups(ds, frames)
  rescale = _rescale(ds, shared, per_frame, frames)
  try:
    arr = ds.pixel_array
  except Exception as e:  # the decoders raise many types for data that does not match the header
    if encapsulated and not _decoder_available(syntax):
      raise Skip(f'compressed pixel data ({syntax.name}) that no installed decoder reads; '
                 'install pylibjpeg with pylibjpeg-libjpeg/-openjpeg, or gdcm') from None
    raise Skip(f'unreadable or truncated pixel data ({type(e).__name__})') from None
  arr = arr.reshape((1,) + arr.shape) if arr.ndim == 2 else arr
  if arr.shape != (frames, rows, cols):
    raise Skip(f'decoded pixels of shape {arr.shape}, not the {(frames, rows, cols)} its header claims')
  if rescale is None:
    try:
      out = np.asarray(pixels.apply_modality_lut(arr, ds), np.float32)
    except Exception as e:
      raise Skip(f'cannot apply the ModalityLUTSequence ({type(e).__name__})') from None
  else:  # per frame: Enhanced CT may rescale each frame differently
    out = arr.astype(np.float32)
    out *= rescale[0][:, None, None]
    out += rescale[1][:, None, None]
  if modality.upper() in RADIOGRAPHY and get(ds, 'PhotometricInterpretation', _text, '') == 'MONOCHROME1':
    out = out.max() + out.min() - out  # stored with white = low values; make denser = brighter
  return out[order] if order else out


def _decoder_available(syntax) -> bool:
  from pydicom.pixels import get_decoder  # pylint: disable=g-import-not-at-top
  try:
    return get_decoder(syntax).is_available
  except Exception:  # pylint: disable=broad-except  (no decoder at all for this syntax)
    return False

"""Real DICOM files (shipped inside pydicom) turned into small series for the ingestion tests, damaged at
the byte level the way exports are, and a synthetic Enhanced CT object."""

import os
import struct

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def pydicom_file(name: str) -> str:
  return get_testdata_file(name, download=False)  # never the network: it hangs here


def write(ds, path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ds.save_as(path, enforce_file_format=True)


def ct_series(folder: str, num_slices: int, tags: dict[str, str] | None = None, step_mm: float = 5.0):
  """`num_slices` copies of pydicom's CT_small.dcm as one series: slice k at z = k·step_mm with 100·k added
  to its stored values; files are named so that their alphabetical order is not the slice order."""
  series = generate_uid()
  for k in range(num_slices):
    ds = pydicom.dcmread(pydicom_file('CT_small.dcm'))
    for tag, value in (tags or {}).items():
      setattr(ds, tag, value)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
    ds.InstanceNumber = num_slices - k
    ds.ImagePositionPatient = [-158.135803, -179.035797, step_mm * k]
    ds.PixelData = (ds.pixel_array.astype(np.int16) + np.int16(100 * k)).tobytes()
    write(ds, os.path.join(folder, f'{chr(ord("z") - k)}.dcm'))


def element(raw: bytes, keyword: str) -> tuple[int, int]:
  """(offset of the length field, value length) of the first `keyword` element with a 2-byte length in an
  explicit-VR little-endian file: what byte-level damage needs to find its target."""
  tag = pydicom.datadict.tag_for_keyword(keyword)
  vr = pydicom.datadict.dictionary_VR(tag)
  at = raw.index(struct.pack('<HH', tag >> 16, tag & 0xFFFF) + vr.encode())
  return at + 6, struct.unpack('<H', raw[at + 6:at + 8])[0]


def replace_value(raw: bytes, keyword: str, value: bytes) -> bytes:
  """`raw` with the value of `keyword` replaced by `value` (padded to even length), bypassing pydicom's
  checks: how a value that pydicom would refuse to write (a word in a DS, two numbers in Columns) is made."""
  at, length = element(raw, keyword)
  value += b' ' * (len(value) % 2)
  return raw[:at] + struct.pack('<H', len(value)) + value + raw[at + 2 + length:]


def replace_vr(raw: bytes, keyword: str, vr: bytes) -> bytes:
  """`raw` with the VR bytes of `keyword` overwritten (e.g. b'Q!'), as a flipped byte does."""
  at, _ = element(raw, keyword)
  return raw[:at - 2] + vr + raw[at:]


def enhanced_ct(path: str, hu: np.ndarray, z_mm: list[float], slopes: list[float], intercepts: list[float],
                spacing: tuple[float, float] = (0.5, 0.75), thickness: float = 2.0, series: str = ''):
  """An Enhanced CT object (multi-frame) holding `hu` [frames, rows, cols] with frame k at z = z_mm[k] and
  stored as (hu - intercepts[k]) / slopes[k]: spacing, orientation, positions and rescale only in the shared
  and per-frame functional groups, none at the top level, as scanners write them."""
  from pydicom.dataset import Dataset, FileMetaDataset  # pylint: disable=g-import-not-at-top
  from pydicom.sequence import Sequence  # pylint: disable=g-import-not-at-top
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  item = lambda **kw: Sequence([_dataset(Dataset(), kw)])
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = uid.EnhancedCTImageStorage
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
  ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds.Modality, ds.PatientID, ds.SeriesInstanceUID = 'CT', 'ENHANCED-1', series or generate_uid()
  ds.StudyInstanceUID = generate_uid()
  ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL', 'NONE']
  ds.NumberOfFrames, ds.Rows, ds.Columns = hu.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
  ds.SharedFunctionalGroupsSequence = Sequence([_dataset(Dataset(), {
      'PixelMeasuresSequence': item(PixelSpacing=list(spacing), SliceThickness=thickness),
      'PlaneOrientationSequence': item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])})])
  ds.PerFrameFunctionalGroupsSequence = Sequence([_dataset(Dataset(), {
      'PlanePositionSequence': item(ImagePositionPatient=[-10.0, -20.0, z]),
      'PixelValueTransformationSequence': item(RescaleSlope=s, RescaleIntercept=b, RescaleType='HU')})
      for z, s, b in zip(z_mm, slopes, intercepts)])
  stored = np.stack([(h - b) / s for h, s, b in zip(hu, slopes, intercepts)])
  ds.PixelData = np.round(stored).astype(np.uint16).tobytes()
  write(ds, path)


def _dataset(ds, values: dict):
  for keyword, value in values.items():
    setattr(ds, keyword, value)
  return ds

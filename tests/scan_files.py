"""Real DICOM files (shipped inside pydicom) turned into small series for the ingestion tests."""

import os

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

"""Synthetic images out as DICOM and NIfTI: the HU survive the round trip and the files say what they are."""

import os

import numpy as np
import pydicom
from pydicom import pixels
import pytest

from aigc_jax.imaging import export
from aigc_jax.data import prepare
from aigc_jax.data import records


def _images():
  rng = np.random.default_rng(0)
  hu = rng.uniform(-1024, 2000, (3, 20, 24)).astype(np.float32)
  hu[:, 0, 0] = -1024.0
  hu[:, 0, 1] = 3071.4
  return hu


def test_dicom_export_round_trips_hu_within_one_and_is_marked_synthetic(tmp_path):
  hu = _images()
  paths = export.write_dicom_series(hu, str(tmp_path / 'dcm'), pixel_mm=0.7, description='diffusion/unet step 9')
  assert [os.path.basename(p) for p in paths] == ['IMG0000.dcm', 'IMG0001.dcm', 'IMG0002.dcm']
  uids = set()
  for img, path in zip(hu, paths):
    ds = pydicom.dcmread(path)  # a valid Part 10 file: preamble, meta, explicit VR little endian
    assert ds.SOPClassUID == export.CT_IMAGE_STORAGE and ds.Modality == 'CT'
    back = pixels.apply_modality_lut(ds.pixel_array, ds)  # stored values → HU via slope/intercept
    assert np.max(np.abs(back - img)) <= 0.5 + 1e-3
    assert list(ds.ImageType[:2]) == ['DERIVED', 'SECONDARY']
    assert 'SYNTHETIC' in str(ds.PatientName) and 'SYNTHETIC' in ds.SeriesDescription
    assert 'not a patient' in ds.ImageComments and 'step 9' in ds.ImageComments
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.7] and (ds.Rows, ds.Columns) == (20, 24)
    uids.add(ds.SOPInstanceUID)
  assert len(uids) == 3


def test_dicom_and_nifti_exports_read_back_through_our_own_ingest(tmp_path):
  hu = _images()
  export.write_dicom_series(hu, str(tmp_path / 'in' / 'dcm'), pixel_mm=0.7, slice_mm=2.5, description='x')
  export.write_nifti(hu, str(tmp_path / 'in' / 'vol.nii.gz'), pixel_mm=0.7, slice_mm=2.5)
  report = prepare.prepare_scans(input_dir=str(tmp_path / 'in'), output=str(tmp_path / 'out'), name='back',
                                 layout='3d', size=0, val_fraction=0, test_fraction=0)
  assert report['counts']['train']['volumes'] == 2, report
  src = records.TfdsSource('back', data_dir=str(tmp_path / 'out'), split='train')
  for i in range(2):
    vol = src[i]
    # The same slices in the same orientation and order from either format; HU rounded to integers.
    np.testing.assert_allclose(vol['hu'], np.clip(np.round(hu), -1024, 3071), atol=0.5 + 1e-3)
    np.testing.assert_allclose(vol['spacing'], [0.7, 0.7, 2.5], rtol=1e-5)


def test_dicom_export_holds_the_type_2_attributes_and_places_independent_samples_apart(tmp_path):
  hu = _images()
  paths = export.write_dicom_series(hu, str(tmp_path / 'in' / 'dcm'), pixel_mm=0.7, description='x')
  written = [pydicom.dcmread(p) for p in paths]
  for ds in written:  # Type 2 of CT Image Storage: present, empty allowed
    for name in ('KVP', 'PositionReferenceIndicator', 'PatientName', 'PatientID', 'PatientBirthDate',
                 'PatientSex', 'StudyDate', 'StudyTime', 'ReferringPhysicianName', 'StudyID', 'AccessionNumber',
                 'SeriesNumber', 'Manufacturer', 'InstanceNumber', 'SliceThickness', 'AcquisitionNumber'):
      assert name in ds, name
  # Independent samples: each its own acquisition and its own position, one slice thickness apart.
  z = [float(ds.ImagePositionPatient[2]) for ds in written]
  np.testing.assert_allclose(np.diff(z), 0.7, rtol=1e-6)
  assert len({int(ds.AcquisitionNumber) for ds in written}) == 3
  # So our own ingest reads them as one series of three slices instead of rejecting three at one position.
  report = prepare.prepare_scans(input_dir=str(tmp_path / 'in'), output=str(tmp_path / 'out'), name='samples',
                                 size=0, val_fraction=0, test_fraction=0)
  assert report['counts']['train']['examples'] == 3 and not report['series_problems'], report


def test_ct_dataset_names_what_is_wrong_with_its_input():
  geometry = {'StudyInstanceUID': '2.25.1', 'SeriesInstanceUID': '2.25.2', 'FrameOfReferenceUID': '2.25.3',
              'PixelSpacing': [1, 1], 'ImagePositionPatient': [0, 0, 0], 'ImageOrientationPatient': [1, 0, 0, 0, 1, 0],
              'RescaleSlope': 1, 'RescaleIntercept': -1024}
  ds = export.ct_dataset(np.zeros((4, 5), np.int16), geometry)
  assert (ds.Rows, ds.Columns, ds.PixelRepresentation, ds.HighBit) == (4, 5, 1, 15)
  with pytest.raises(ValueError, match='uint16 or int16'):
    export.ct_dataset(np.zeros((4, 5), np.float32), geometry)
  with pytest.raises(ValueError, match=r"lack \['RescaleSlope'\]"):
    export.ct_dataset(np.zeros((4, 5), np.uint16), {k: v for k, v in geometry.items() if k != 'RescaleSlope'})
  with pytest.raises(ValueError, match='PatientNmae'):
    export.ct_dataset(np.zeros((4, 5), np.uint16), {**geometry, 'PatientNmae': 'typo'})

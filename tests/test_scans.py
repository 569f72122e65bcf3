"""What `scans` makes of individual files: which objects are scans, Enhanced CT, NIfTI axes, damaged headers.

These call `find_series` and `load` directly (as `prepare` and `denoise` do), without writing a dataset.
"""

import gzip
import io
import os
import struct

import nibabel as nib
import numpy as np
import pydicom
from pydicom import uid
import pytest
import scan_files

from aigc_jax.imaging import scans

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), 'tests', 'data')


def _ingest(folder, modality='CT', layout='2d'):
  """find_series, then load every series, as `prepare` does: (files, [(series, volume)], skipped, problems)."""
  files = scans.list_files(str(folder))
  series, skipped, problems = scans.find_series(files, str(folder), modality, layout)
  loaded = []
  for s in series:
    try:
      loaded.append((s, scans.load(s, files, skipped, layout)))
    except scans.Skip as e:
      problems.append(str(e))
  return files, loaded, skipped, problems


def _ct_small(name='CT_small.dcm', **tags):
  ds = pydicom.dcmread(scan_files.pydicom_file(name))
  ds.SeriesInstanceUID = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  for keyword, value in tags.items():
    setattr(ds, keyword, value)
  return ds


def _raw(name='CT_small.dcm', **tags) -> bytes:
  buf = io.BytesIO()
  pydicom.dcmwrite(buf, _ct_small(name, **tags), enforce_file_format=True)
  return buf.getvalue()


def _reasons(files, skipped, folder):
  return {os.path.relpath(files[i], str(folder)): r for i, r in skipped.items()}


def test_scouts_screen_captures_burned_in_text_and_non_axial_views_are_skipped(tmp_path):
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'axial'), 2)
  cases = {
      'scout.dcm': ({'ImageType': ['ORIGINAL', 'PRIMARY', 'LOCALIZER']}, 'LOCALIZER'),
      'dose_screen.dcm': ({'SOPClassUID': uid.SecondaryCaptureImageStorage}, 'Secondary Capture'),
      'burned_in.dcm': ({'BurnedInAnnotation': 'YES'}, 'BurnedInAnnotation'),
      'coronal.dcm': ({'ImageOrientationPatient': [1, 0, 0, 0, 0, -1]}, 'not an axial'),
      'sagittal.dcm': ({'ImageOrientationPatient': [0, 1, 0, 0, 0, -1]}, 'not an axial'),
      'tilted_axial.dcm': ({'ImageOrientationPatient': [1, 0, 0, 0, 0.9272, -0.3746]}, None),  # gantry tilt
  }
  for name, (tags, _) in cases.items():
    scan_files.write(_ct_small(**tags), str(inp / name))
  files, loaded, skipped, problems = _ingest(inp)
  reasons = _reasons(files, skipped, inp)
  for name, (_, expected) in cases.items():
    if expected:
      assert expected in reasons.get(name, ''), (name, reasons)
  assert 'tilted_axial.dcm' not in reasons and not problems
  assert sorted(len(v) for _, v in loaded) == [1, 2]  # the tilted slice and the axial series


def test_enhanced_ct_takes_rescale_spacing_and_frame_order_from_the_functional_groups(tmp_path):
  # Water (0 HU) in every frame, a marker of 10 HU per mm of z; frames stored out of z order, each with its
  # own rescale (water is stored as 1024, 1024 and 1000).
  z = [10.0, 0.0, 5.0]
  hu = np.zeros((3, 4, 6), np.float32)
  hu[:, 0, 0] = [10 * v for v in z]
  hu[:, 2, 3] = 1000.0
  scan_files.enhanced_ct(str(tmp_path / 'in' / 'enhanced.dcm'), hu, z, slopes=[1, 2, 1],
                         intercepts=[-1024, -2048, -1000])
  files, loaded, skipped, problems = _ingest(tmp_path / 'in', layout='3d')
  assert not skipped and not problems and len(loaded) == 1
  s, vol = loaded[0]
  assert s.spacing == pytest.approx((0.5, 0.75, 5.0)) and s.shape == (4, 6)
  np.testing.assert_array_equal(vol, hu[[1, 2, 0]])  # HU, ordered by position: z = 0, 5, 10 mm
  assert len(files) == 1


def test_single_frame_enhanced_ct_files_of_one_series_form_one_volume(tmp_path):
  series = uid.generate_uid()
  for k, z in enumerate([5.0, 0.0, 2.5]):
    hu = np.full((1, 4, 6), 100.0 * k, np.float32)
    scan_files.enhanced_ct(str(tmp_path / 'in' / f'{k}.dcm'), hu, [z], [1], [-1024], series=series)
  _, loaded, skipped, problems = _ingest(tmp_path / 'in', layout='3d')
  assert not skipped and not problems and len(loaded) == 1
  s, vol = loaded[0]
  assert s.spacing == pytest.approx((0.5, 0.75, 2.5))  # the even gap between positions, not the thickness
  np.testing.assert_array_equal(vol[:, 0, 0], [100.0, 200.0, 0.0])


def test_nifti_spacing_and_shape_follow_the_reoriented_axes(tmp_path):
  # Stored with axes superior (3 mm), anterior (1 mm), right (2 mm): permuted, not only flipped, and
  # anisotropic. A marker in slice 1 from the feet, the most anterior row, the patient's rightmost column.
  sar = np.zeros((4, 5, 6), np.float32)
  sar[1, 4, 5] = 100.0
  affine = np.array([[0, 0, 2, 0], [0, 1, 0, 0], [3, 0, 0, 0], [0, 0, 0, 1]], np.float64)
  os.makedirs(tmp_path / 'in')
  nib.save(nib.Nifti1Image(sar, affine), str(tmp_path / 'in' / 'sar.nii.gz'))
  _, loaded, skipped, problems = _ingest(tmp_path / 'in', 'MR', '3d')
  assert not skipped and not problems
  s, vol = loaded[0]
  assert s.spacing == pytest.approx((1.0, 2.0, 3.0))  # (row: anterior→posterior, col: right→left, slice)
  assert s.shape == (5, 6) and vol.shape == (4, 5, 6)
  assert np.argwhere(vol).tolist() == [[1, 0, 0]]  # radiological view: anterior at the top, right on the left


def test_monochrome1_is_inverted_for_radiographs_only(tmp_path):
  inp = tmp_path / 'in'
  for modality in ('CT', 'DX'):
    scan_files.write(_ct_small(PhotometricInterpretation='MONOCHROME1', Modality=modality),
                     str(inp / f'{modality}.dcm'))
  ref = _ct_small()
  hu = ref.pixel_array.astype(np.float32) * float(ref.RescaleSlope) + float(ref.RescaleIntercept)
  (_, ct), = _ingest(inp, 'CT')[1]
  np.testing.assert_array_equal(ct[0], hu)  # CT: the modality LUT gives HU; MONOCHROME1 is for display
  (_, dx), = _ingest(inp, 'DX')[1]
  np.testing.assert_array_equal(dx[0], hu.max() + hu.min() - hu)  # radiographs: denser is brighter


def _nifti_claiming_more_than_it_holds() -> bytes:
  img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
  raw = bytearray(img.to_bytes())
  raw[40:56] = struct.pack('<8h', 3, 300, 300, 300, 1, 1, 1, 1)  # dim[]: 54 MB claimed, 128 bytes held
  return bytes(raw)


def _truncated_gz(name='example4d.nii.gz') -> bytes:
  raw = open(os.path.join(NIB_DATA, name), 'rb').read()
  return (raw if name.endswith('.gz') else gzip.compress(raw))[:2000]


# Each file, on its own, used to abort a whole run (issue 13): what it is, and what its skip reason names.
HOSTILE = {
    'syntax_not_a_transfer_syntax': (
        lambda: scan_files.replace_value(_raw(), 'TransferSyntaxUID', b'1.2.840.10008.9.9.9\x00'), 'syntax'),
    'syntax_not_a_uid': (
        lambda: scan_files.replace_value(_raw(), 'TransferSyntaxUID', b'JUNK-JUNK-JUNK-JUNK\x00'), 'syntax'),
    'syntax_claims_rle_over_native_pixels': (
        lambda: scan_files.replace_value(_raw(), 'TransferSyntaxUID', b'1.2.840.10008.1.2.5\x00'), 'pixel data'),
    'pixel_spacing_not_a_number': (
        lambda: scan_files.replace_value(_raw(), 'PixelSpacing', b'0.66x\\0.66'), 'PixelSpacing'),
    'position_not_a_number': (
        lambda: scan_files.replace_value(_raw(), 'ImagePositionPatient', b'-158\\-179\\fo'), 'ImagePositionPatient'),
    'orientation_not_a_number': (
        lambda: scan_files.replace_value(_raw(), 'ImageOrientationPatient', b'1\\0\\0\\0\\1\\?'),
        'ImageOrientationPatient'),
    'thickness_not_a_number': (
        lambda: scan_files.replace_value(_raw(), 'SliceThickness', b'5mm'), 'SliceThickness'),
    'thickness_nan': (lambda: scan_files.replace_value(_raw(), 'SliceThickness', b'nan'), 'SliceThickness'),
    'slope_not_a_number': (lambda: scan_files.replace_value(_raw(), 'RescaleSlope', b'one'), 'RescaleSlope'),
    'intercept_not_a_number': (
        lambda: scan_files.replace_value(_raw(), 'RescaleIntercept', b'-1O24'), 'RescaleIntercept'),
    'columns_multi_valued': (
        lambda: scan_files.replace_value(_raw(), 'Columns', struct.pack('<HH', 128, 128)), 'Columns'),
    'modality_vr_damaged': (lambda: scan_files.replace_vr(_raw(), 'Modality', b'Q!'), 'Modality'),
    'series_vr_damaged': (
        lambda: scan_files.replace_vr(_raw(), 'SeriesInstanceUID', b'ZZ'), 'SeriesInstanceUID'),
    'size_claims_8_terabytes': (
        lambda: _raw(Rows=65535, Columns=65535, NumberOfFrames=1000), 'voxels'),
    'size_claims_more_than_the_file': (lambda: _raw(Rows=1024, Columns=1024), 'more pixel data'),
    'compressed_size_lie': (lambda: _raw('693_J2KI.dcm', Rows=30000, Columns=30000), 'voxels'),
    'nifti_claims_more_than_it_holds': (_nifti_claiming_more_than_it_holds, 'more data than the file'),
    'nifti_truncated_gz': (_truncated_gz, 'NIfTI'),
    'nifti_3d_truncated_gz': (lambda: _truncated_gz('anatomical.nii'), 'NIfTI'),
    'junk': (lambda: np.random.default_rng(0).bytes(3000), 'not a DICOM'),
}


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_a_hostile_file_is_skipped_with_a_reason_and_the_good_series_is_read(tmp_path, case):
  make, expected = HOSTILE[case]
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'good'), 2)
  name = 'bad.nii.gz' if case.endswith('_gz') else 'bad.nii' if case.startswith('nifti') else 'bad.dcm'
  (inp / name).write_bytes(make())
  for layout in ('2d', '3d'):
    files, loaded, skipped, problems = _ingest(inp, layout=layout)
    reasons = _reasons(files, skipped, inp)
    assert expected in reasons.get(name, ''), (case, reasons, problems)
    assert [len(v) for _, v in loaded] == [2], (case, reasons, problems)  # the good series, whole
    assert set(reasons) == {name}


def test_a_slice_with_damaged_geometry_is_left_out_not_its_series(tmp_path):
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp), 3)
  path = inp / 'y.dcm'  # the middle slice
  path.write_bytes(scan_files.replace_value(path.read_bytes(), 'ImagePositionPatient', b'-158\\-179\\5?'))
  files, loaded, skipped, problems = _ingest(inp, layout='2d')
  reasons = list(_reasons(files, skipped, inp).values())
  assert len(reasons) == 1 and reasons[0].startswith('damaged DICOM attribute ImagePositionPatient ('), reasons
  assert [len(v) for _, v in loaded] == [2] and not problems


def test_non_finite_voxels_are_set_to_the_finite_range_with_a_note(tmp_path):
  vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
  vol[0, 0, 0], vol[1, 1, 1], vol[1, 2, 3] = np.nan, np.inf, -np.inf
  os.makedirs(tmp_path / 'in')
  nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / 'in' / 'nan.nii'))
  _, loaded, skipped, problems = _ingest(tmp_path / 'in', 'MR', '3d')
  assert not skipped and not problems
  s, out = loaded[0]
  finite = vol[np.isfinite(vol)]
  assert np.isfinite(out).all() and out.min() == finite.min() and out.max() == finite.max()
  assert any('non-finite' in note for note in s.notes)

"""Ingesting real DICOM/NIfTI files (shipped in pydicom and nibabel) into TFDS ArrayRecord datasets."""

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid
import pytest
import scan_files

from aigc_jax.imaging import geometry
from aigc_jax.data import prepare
from aigc_jax.data import records

PLANTED = {'PatientName': 'PLANTED^SECRET^NAME', 'PatientID': 'MRN-PLANTED-4711',
           'PatientBirthDate': '19410203', 'InstitutionName': 'PLANTED GENERAL HOSPITAL',
           'AccessionNumber': 'ACC-PLANTED-99', 'StudyDate': '20010911', 'PatientAddress': 'PLANTED STREET 1'}
NIB_DATA = os.path.join(os.path.dirname(nib.__file__), 'tests', 'data')


def _ct_input(root: str) -> str:
  """A folder of scans: a 3-slice CT series with planted identifiers (files out of order), the plain
  CT_small slice, and things to skip: MR, an RT plan, an SR, an ECG, an NM JPEG 2000, a text file, a
  truncated header, truncated pixel data (native and JPEG 2000), and a duplicate instance."""
  inp = os.path.join(root, 'input')
  scan_files.ct_series(os.path.join(inp, 'patient_a'), 3, PLANTED)
  shutil.copy(scan_files.pydicom_file('CT_small.dcm'), os.path.join(inp, 'ct_small.dcm'))
  # A JPEG 2000 CT slice cut inside its pixel data: pydicom warns with the file's path while reading it.
  ds = pydicom.dcmread(scan_files.pydicom_file('693_J2KI.dcm'))
  ds.SeriesInstanceUID = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
  scan_files.write(ds, os.path.join(inp, 'patient_a', 'cut_j2k.dcm'))
  raw = open(os.path.join(inp, 'patient_a', 'cut_j2k.dcm'), 'rb').read()
  with open(os.path.join(inp, 'patient_a', 'cut_j2k.dcm'), 'wb') as f:
    f.write(raw[:-1000])
  shutil.copy(scan_files.pydicom_file('CT_small.dcm'), os.path.join(inp, 'zz_duplicate.dcm'))
  os.makedirs(os.path.join(inp, 'other'))
  for name in ('MR_small.dcm', 'rtplan.dcm', 'reportsi.dcm', 'waveform_ecg.dcm', 'JPEG2000.dcm'):
    shutil.copy(scan_files.pydicom_file(name), os.path.join(inp, 'other', name))
  with open(os.path.join(inp, 'other', 'notes.txt'), 'w') as f:
    f.write('not a scan')
  raw = open(scan_files.pydicom_file('CT_small.dcm'), 'rb').read()
  with open(os.path.join(inp, 'other', 'cut_header.dcm'), 'wb') as f:
    f.write(raw[:400])
  ds = pydicom.dcmread(scan_files.pydicom_file('CT_small.dcm'))
  ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
  scan_files.write(ds, os.path.join(inp, 'other', 'cut_pixels.dcm'))
  raw = open(os.path.join(inp, 'other', 'cut_pixels.dcm'), 'rb').read()
  with open(os.path.join(inp, 'other', 'cut_pixels.dcm'), 'wb') as f:
    f.write(raw[:-9000])
  return inp


def _all_bytes(folder: str) -> bytes:
  out = []
  for root, _, files in os.walk(folder):
    out.append(root.encode())
    for f in files:
      out.append(f.encode())
      out.append(open(os.path.join(root, f), 'rb').read())
  return b'\n'.join(out)


def test_ct_series_are_ordered_converted_to_hu_skipped_with_reasons_and_de_identified(tmp_path):
  inp = _ct_input(str(tmp_path))
  out = str(tmp_path / 'tfds')
  env = {**os.environ, 'PYTHONPATH': os.getcwd()}
  proc = subprocess.run([sys.executable, '-m', 'aigc_jax.prepare', f'--input={inp}', f'--output={out}',
                         '--name=ct_in', '--size=0', '--val_fraction=0', '--test_fraction=0'],
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.load(open(os.path.join(out, 'ct_in', 'prepare_report.json')))
  assert report['counts']['train'] == {'patients': 2, 'volumes': 2, 'examples': 4}
  reasons = ' | '.join(r['reason'] for r in report['skipped_files'])
  for expected in ('modality MR', 'no image in this DICOM object', 'not a DICOM or NIfTI file',
                   'incomplete DICOM header', 'a truncated file', 'duplicate', 'modality NM'):
    assert expected in reasons, (expected, reasons)
  # MR, RT plan, SR, ECG, NM, text, cut header, cut pixels (twice), duplicate
  assert len(report['skipped_files']) == 10
  assert report['files_used'] == 4 and report['files_seen'] == 4 + 10
  assert all(isinstance(r['file'], int) for r in report['skipped_files'])  # no paths without --report_paths

  src = records.TfdsSource('ct_in', data_dir=out, split='train')
  examples = [src[i] for i in range(len(src))]
  ref = pydicom.dcmread(scan_files.pydicom_file('CT_small.dcm')).pixel_array.astype(np.float32) - 1024.0  # slope 1
  series = sorted([e for e in examples if e['num_slices'] == 3], key=lambda e: int(e['slice']))
  assert len(series) == 3
  for k, e in enumerate(series):  # ordered by position, not by file name; HU = stored + intercept
    np.testing.assert_array_equal(e['hu'], np.clip(ref + 100 * k, -1024, 3071))
    np.testing.assert_allclose(e['spacing'], [0.661468, 0.661468, 5.0], rtol=1e-5)
  assert len({int(e['patient']) for e in examples}) == 2
  meta = json.load(open(os.path.join(records.dataset_dir(out, 'ct_in'), 'metadata.json')))
  assert meta['modality'] == 'CT' and meta['units'] == 'HU'
  assert -1024 <= meta['intensity_train']['p1'] < meta['intensity_train']['p99'] <= 3071

  blob = _all_bytes(out) + proc.stdout.encode() + proc.stderr.encode()
  for value in PLANTED.values():  # nowhere in records, metadata, report, file names or logs
    assert value.encode() not in blob, value
    assert value.split('^')[0].encode() not in blob, value
  assert b'patient_a' not in blob  # the folder name (often a patient name) does not leak either


def test_mr_dicom_variants_and_nifti_volumes(tmp_path):
  inp = tmp_path / 'input'
  for name in ('MR_small.dcm', 'MR_small_bigendian.dcm', 'MR_small_implicit.dcm', 'MR_small_RLE.dcm',
               'MR_small_jp2klossless.dcm', 'MR_small_jpeg_ls_lossless.dcm'):
    ds = pydicom.dcmread(scan_files.pydicom_file(name))
    ds.SeriesInstanceUID = ds.SOPInstanceUID = generate_uid()  # single-slice series, one per encoding
    ds.PatientID = name
    scan_files.write(ds, str(inp / 'dicom' / name))
  os.makedirs(inp / 'sub-01' / 'anat')
  shutil.copy(os.path.join(NIB_DATA, 'anatomical.nii'), inp / 'sub-01' / 'anat' / 'T1w.nii')
  shutil.copy(os.path.join(NIB_DATA, 'example4d.nii.gz'), inp / 'func.nii.gz')
  report = prepare.prepare_scans(input_dir=str(inp), output=str(tmp_path / 'out'), name='mr', modality='MR',
                                 layout='3d', size=32, val_fraction=0, test_fraction=0)
  # 5 DICOM slices + the T1 volume + 2 time points of the 4-D file. JPEG 2000 decodes through Pillow;
  # JPEG-LS needs a decoder that is not installed and is skipped with the fix in its reason.
  assert report['counts']['train']['volumes'] == 8, report
  assert report['counts']['train']['patients'] == 7
  jls = [r['reason'] for r in report['skipped_files']]
  assert len(jls) == 1 and 'compressed pixel data (JPEG-LS' in jls[0] and 'pylibjpeg' in jls[0], jls

  src = records.TfdsSource('mr', data_dir=str(tmp_path / 'out'), split='train')
  vols = [src[i] for i in range(len(src))]
  mr = pydicom.dcmread(scan_files.pydicom_file('MR_small.dcm')).pixel_array.astype(np.float32)
  dicom = [v['hu'] for v in vols if v['hu'].shape[0] == 1]
  assert len(dicom) == 5
  for v in dicom:  # the big-endian, implicit-VR, RLE and JPEG 2000 encodings decode to the same pixels
    np.testing.assert_allclose(v, dicom[0])
  np.testing.assert_allclose(dicom[0][0], geometry.fit_square(mr, 32, mr.min())[0], atol=1e-3)

  t1 = nib.as_closest_canonical(nib.load(os.path.join(NIB_DATA, 'anatomical.nii')))
  data = np.asarray(t1.dataobj, np.float32)
  vol = [v for v in vols if v['hu'].shape[0] == data.shape[2]]
  assert len(vol) == 1 and vol[0]['hu'].shape == (data.shape[2], 32, 32)
  # Radiological view: row = anterior→posterior, column = patient's right→left; fitted into 32×32.
  view = np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))
  np.testing.assert_allclose(vol[0]['hu'], geometry.fit_square(view, 32, float(data.min()))[0], atol=1e-3)
  zooms = t1.header.get_zooms()
  scale = 32 / max(data.shape[:2])
  np.testing.assert_allclose(vol[0]['spacing'], [zooms[1] / scale, zooms[0] / scale, zooms[2]], rtol=1e-3)


def test_nothing_usable_exits_1_and_bad_arguments_are_named(tmp_path):
  inp = tmp_path / 'input'
  os.makedirs(inp)
  (inp / 'readme.txt').write_text('no scans here')
  env = {**os.environ, 'PYTHONPATH': os.getcwd()}
  run = lambda *a: subprocess.run([sys.executable, '-m', 'aigc_jax.prepare', *a], capture_output=True,
                                  text=True, env=env, timeout=300)
  proc = run(f'--input={inp}', f'--output={tmp_path / "out"}', '--name=empty')
  assert proc.returncode == 1 and 'Nothing written' in proc.stdout
  assert json.load(open(tmp_path / 'out' / 'empty' / 'prepare_report.json'))['skip_reasons'] == {
      'not a DICOM or NIfTI file': 1}
  proc = run(f'--input={tmp_path / "missing"}', f'--output={tmp_path / "out"}', '--name=x')
  assert proc.returncode == 1 and 'is not a folder' in proc.stderr
  with pytest.raises(ValueError, match='--name'):
    prepare.prepare_scans(input_dir=str(inp), output=str(tmp_path), name='Bad-Name')
  with pytest.raises(ValueError, match='--spacing'):
    prepare.parse_spacing('0.8;0.8')


def test_resample_to_spacing_and_size():
  vol = np.arange(2 * 40 * 20, dtype=np.float32).reshape(2, 40, 20)
  out, sp = geometry.resample(vol, (0.5, 1.0, 3.0), target=(1.0, 1.0))
  assert out.shape == (2, 20, 20) and sp == (1.0, 1.0, 3.0)
  out, sp = geometry.resample(vol, (0.5, 1.0, 3.0), size=16, fill=-7.0)
  assert out.shape == (2, 16, 16) and sp == (1.25, 2.5, 3.0)
  assert np.all(out[:, :, :4] == -7.0) and np.all(out[:, :, 12:] == -7.0)  # padded left and right
  with pytest.raises(geometry.NoSpacing):
    geometry.resample(vol, (0.0, 0.0, 0.0), target=(1.0, 1.0))


def test_phantom_splits_on_disk_equal_the_online_source(tmp_path):
  summary = prepare.prepare_phantom(output=str(tmp_path), name='ph', size=32,
                                    counts={'train': 6, 'test': 3}, pairs=True)
  assert summary['seeds'] == {'train': 0, 'test': 1}
  src = records.TfdsSource('ph', data_dir=str(tmp_path), split='train')
  assert len(src) == 6
  from aigc_jax.data import phantom  # pylint: disable=g-import-not-at-top
  online = phantom.PhantomCT(seed=0, size=32, num_examples=6, dose=(1.25e9, 0.25, 400.0))  # the defaults
  stored = sorted((src[i] for i in range(6)), key=lambda e: float(e['level']))
  fresh = sorted((online[i] for i in range(6)), key=lambda e: float(e['level']))
  for s, f in zip(stored, fresh):  # same slices, HU rounded to integers on disk
    np.testing.assert_allclose(s['hu'], f['hu'], atol=0.5 + 1e-3)
    np.testing.assert_allclose(s['hu_low'], f['hu_low'], atol=0.5 + 1e-3)
    assert int(s['lesion_kind']) == int(f['lesion_kind'])
  with pytest.raises(FileExistsError, match='already exists'):
    prepare.prepare_phantom(output=str(tmp_path), name='ph', size=32, counts={'train': 1})


def test_nifti_is_shown_in_the_radiological_view_whatever_its_voxel_order(tmp_path):
  # A marker at the patient's right-anterior: in the radiological view it is at the top (anterior) and on
  # the image's left (the patient's right), in either voxel order.
  ras = np.zeros((8, 8, 2), np.float32)
  ras[6, 6, :] = 100.0                       # voxel x=6 (toward the right), y=6 (toward anterior)
  lps = ras[::-1, ::-1, :].copy()            # the same scan stored with x→left, y→posterior
  os.makedirs(tmp_path / 'in')
  nib.save(nib.Nifti1Image(ras, np.diag([1.0, 1.0, 1.0, 1.0])), str(tmp_path / 'in' / 'ras.nii.gz'))
  nib.save(nib.Nifti1Image(lps, np.diag([-1.0, -1.0, 1.0, 1.0])), str(tmp_path / 'in' / 'lps.nii.gz'))
  prepare.prepare_scans(input_dir=str(tmp_path / 'in'), output=str(tmp_path / 'out'), name='o',
                        modality='MR', layout='3d', size=0, val_fraction=0, test_fraction=0)
  src = records.TfdsSource('o', data_dir=str(tmp_path / 'out'), split='train')
  for i in range(2):
    vol = src[i]['hu']
    rows, cols = np.nonzero(vol[0])
    assert (rows.tolist(), cols.tolist()) == ([1], [1])  # row 1 of 8 (anterior), column 1 (patient's right)


def test_inconsistent_series_are_skipped_every_file_is_accounted_for_and_monochrome1_ct_keeps_its_hu(tmp_path):
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'same_position'), 2, step_mm=0.0)      # two slices at one position
  scan_files.ct_series(str(inp / 'mixed_sizes'), 2)
  ds = pydicom.dcmread(str(inp / 'mixed_sizes' / 'y.dcm'))
  small = ds.pixel_array[:64, :64].copy()
  ds.Rows, ds.Columns, ds.PixelData = 64, 64, small.tobytes()
  scan_files.write(ds, str(inp / 'mixed_sizes' / 'y.dcm'))
  scan_files.ct_series(str(inp / 'gap'), 4)
  os.remove(inp / 'gap' / 'x.dcm')                                       # slice 2 of 4 missing: uneven
  ds = pydicom.dcmread(scan_files.pydicom_file('CT_small.dcm'))
  ds.SeriesInstanceUID = ds.SOPInstanceUID = generate_uid()
  ds.PhotometricInterpretation = 'MONOCHROME1'
  scan_files.write(ds, str(inp / 'mono1.dcm'))
  scan_files.ct_series(str(inp / 'rle'), 3)  # its middle slice claims RLE: only decoding its pixels tells
  (inp / 'rle' / 'y.dcm').write_bytes(scan_files.replace_value(
      (inp / 'rle' / 'y.dcm').read_bytes(), 'TransferSyntaxUID', b'1.2.840.10008.1.2.5\x00'))
  report = prepare.prepare_scans(input_dir=str(inp), output=str(tmp_path / 'out'), name='odd', layout='3d',
                                 size=0, val_fraction=0, test_fraction=0)
  problems = ' | '.join(report['series_problems'])
  assert 'same position' in problems and 'different sizes' in problems and 'uneven slice spacing' in problems
  assert 'a slice could not be read' in problems
  assert report['counts']['train']['volumes'] == 1  # only the MONOCHROME1 slice is usable in 3-D
  # Every file is used or skipped with a reason, also those of a series that failed while its pixels were read.
  assert report['files_used'] == 1 and report['files_skipped'] == report['files_seen'] - 1 == 2 + 2 + 3 + 3
  vol = records.TfdsSource('odd', data_dir=str(tmp_path / 'out'), split='train')[0]['hu'][0]
  hu = ds.pixel_array.astype(np.float32) - 1024.0
  # CT: the modality LUT gives HU; MONOCHROME1 only tells a viewer how to show them, so nothing is inverted.
  np.testing.assert_array_equal(vol, np.clip(hu, -1024, 3071))
  # In 2-D the series with a missing slice is still usable, slice by slice.
  report = prepare.prepare_scans(input_dir=str(inp), output=str(tmp_path / 'out2'), name='odd2', layout='2d',
                                 size=0, val_fraction=0, test_fraction=0)
  assert report['counts']['train']['examples'] == 1 + 3 + 2 and 'uneven slice spacing' in report['series_notes']


def test_labels_from_a_csv_reach_each_series_examples_and_never_the_paths(tmp_path):
  inp = _ct_input(str(tmp_path))
  labels = tmp_path / 'labels.csv'
  # A folder row (patient_a's 3-slice series) and a file row; the other folder's files have no row, but
  # nothing usable is there anyway.
  labels.write_text('path,lesion,kind\npatient_a,1,2\nct_small.dcm,0,0\n')
  out = str(tmp_path / 'tfds')
  report = prepare.prepare_scans(input_dir=inp, output=out, name='labelled', size=0, val_fraction=0,
                                 test_fraction=0, labels=str(labels))
  assert report['labels'] == {'lesion': {'train': {'0': 1, '1': 3}, 'validation': {}, 'test': {}},
                              'kind': {'train': {'0': 1, '2': 3}, 'validation': {}, 'test': {}}}
  src = records.TfdsSource('labelled', data_dir=out, split='train')
  got = sorted((int(e['num_slices']), int(e['lesion']), int(e['kind'])) for e in (src[i] for i in range(len(src))))
  assert got == [(1, 0, 0), (3, 1, 2), (3, 1, 2), (3, 1, 2)]
  assert b'patient_a' not in _all_bytes(out)   # the CSV's paths are not written

  # A series no row covers is left out, with the reason; its files are accounted for.
  labels.write_text('path,lesion\npatient_a,1\n')
  report = prepare.prepare_scans(input_dir=inp, output=out, name='partly', size=0, val_fraction=0,
                                 test_fraction=0, labels=str(labels))
  assert report['counts']['train']['examples'] == 3
  assert any('no row of --labels covers its files' in p for p in report['series_problems'])
  for text, match in (('lesion,path\na,1\n', 'first row must be a header'),
                      ('path,lesion\npatient_a,yes\n', 'row 2: labels must be whole numbers'),
                      ('path,image\npatient_a,1\n', 'other than the scan keys'),
                      ('path,lesion\npatient_a,1,2\n', 'row 2: 3 cells'),
                      (f'path,lesion\n{inp}/patient_a,1\n', 'row 2: .* is not a path relative to --input'),
                      ('path,lesion\n,1\n', 'row 2: .* is not a path relative to --input')):
    labels.write_text(text)
    with pytest.raises(ValueError, match=match):
      prepare.prepare_scans(input_dir=inp, output=out, name='bad', labels=str(labels))
  with pytest.raises(FileNotFoundError, match='no such file'):
    prepare.prepare_scans(input_dir=inp, output=out, name='bad', labels=str(tmp_path / 'none.csv'))

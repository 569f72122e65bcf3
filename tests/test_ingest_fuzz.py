"""Hostile input for `prepare` and `denoise`: mutants of the DICOM and NIfTI files that ship with pydicom and
nibabel (truncations, byte flips, damaged VRs, tags that lie, junk) mixed with one real CT series.

Whatever a file does to pydicom or nibabel, the run goes on: every file is used or skipped with a reason, and
the real series is written. The mutants come from a seeded generator, so a failure names a reproducible case.
"""

import gzip
import io
import json
import os
import struct
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom import uid
import pytest
import scan_files

from aigc_jax.data import prepare
from aigc_jax.data import records

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), 'tests', 'data')
# CT and MR objects in several encodings (explicit/implicit VR, big endian, RLE, JPEG 2000), a multi-frame
# RT dose and a segmentation with functional groups: the DICOM sources the mutants are made from.
DICOM_SOURCES = ('CT_small.dcm', '693_J2KI.dcm', 'J2K_pixelrep_mismatch.dcm', 'MR_small.dcm',
                 'MR_small_bigendian.dcm', 'MR_small_implicit.dcm', 'MR_small_RLE.dcm',
                 'MR_small_jp2klossless.dcm', 'rtdose.dcm', 'liver_1frame.dcm')
NIFTI_SOURCES = ('anatomical.nii', 'example4d.nii.gz', 'example_nifti2.nii.gz')
GOOD_PATIENT = {'PatientName': 'FUZZ^GOOD^SERIES', 'PatientID': 'MRN-FUZZ-GOOD-0815'}
# Same-length swaps, so that the file meta stays parseable and only the claim changes.
SYNTAX_SWAPS = {b'1.2.840.10008.1.2.1\x00': (b'1.2.840.10008.1.2.2\x00', b'1.2.840.10008.1.2.5\x00',
                                             b'1.2.840.10008.9.9.9\x00', b'JUNK-JUNK-JUNK-JUNK\x00'),
                b'1.2.840.10008.1.2.4.90': (b'1.2.840.10008.1.2.4.50', b'1.2.840.10008.1.2.4.80',
                                            b'1.2.840.10008.1.2.4.57', b'1.2.840.10008.1.2.1\x00\x00\x00')}
DS_LIES = (b'abc', b'1.0\\x', b'nan', b'-inf', b'1e999', b'', b'\\\\\\', b'0', b'-1', b'12\x00')


def _dicom_base(rng, name: str) -> bytes:
  """A source file with fresh UIDs (mutants must not be duplicates of each other) and, mostly, claiming to be
  CT, so that MR encodings and other objects get past the modality check and down to their pixels."""
  ds = pydicom.dcmread(scan_files.pydicom_file(name))
  # UIDs from the generator too: their length moves every byte offset after them.
  ds.SeriesInstanceUID = ds.SOPInstanceUID = uid.generate_uid(entropy_srcs=[str(rng.integers(2 ** 62))])
  if 'MediaStorageSOPInstanceUID' in getattr(ds, 'file_meta', ()):
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  if rng.random() < 0.8:
    ds.Modality = 'CT'
    ds.SOPClassUID = uid.CTImageStorage
  buf = io.BytesIO()
  ds.save_as(buf)  # as read: same encoding
  return buf.getvalue()


def _pixel_offset(raw: bytes) -> int:
  at = max(raw.rfind(b'\xe0\x7f\x10\x00'), raw.rfind(b'\x7f\xe0\x00\x10'))
  return at if at > 132 else len(raw)


def _lie(rng, raw: bytes) -> bytes:
  """One tag that lies: sizes, encodings, non-numbers in DS/IS, several values where one belongs."""
  kind = rng.integers(7)
  try:
    if kind == 0:
      for old, new in SYNTAX_SWAPS.items():
        if old in raw[:400]:
          at = raw.index(old)
          return raw[:at] + new[rng.integers(len(new))] + raw[at + len(old):]
      return _flip(rng, raw, header=True)
    if kind == 1:
      keyword = ('PixelSpacing', 'ImagePositionPatient', 'ImageOrientationPatient', 'SliceThickness',
                 'RescaleSlope', 'RescaleIntercept')[rng.integers(6)]
      return scan_files.replace_value(raw, keyword, DS_LIES[rng.integers(len(DS_LIES))])
    if kind == 2:
      keyword = ('Rows', 'Columns', 'BitsAllocated', 'SamplesPerPixel', 'PixelRepresentation')[rng.integers(5)]
      return scan_files.replace_value(raw, keyword, struct.pack('<HH', *rng.integers(0, 65536, 2)))
    if kind == 3:
      keyword = ('Rows', 'Columns', 'BitsAllocated', 'BitsStored')[rng.integers(4)]
      value = int((2, 8, 1000, 65535, 0, 1, 33)[rng.integers(7)])
      return scan_files.replace_value(raw, keyword, struct.pack('<H', value))
    if kind == 4:
      return scan_files.replace_value(raw, 'NumberOfFrames', str(int(rng.choice([0, 2, 1000, 10 ** 7]))).encode())
    if kind == 5:
      return scan_files.replace_value(raw, 'PhotometricInterpretation',
                                      (b'MONOCHROME1', b'RGB', b'PALETTE COLOR', b'\xff\xfe')[rng.integers(4)])
    keyword = ('Modality', 'SeriesInstanceUID', 'Rows', 'PixelSpacing', 'RescaleSlope',
               'ImageType', 'PatientID', 'SOPClassUID')[rng.integers(8)]
    return scan_files.replace_vr(raw, keyword, (b'Q!', b'ZZ', b'\x00\x01', b'SQ', b'OB', b'UN')[rng.integers(6)])
  except ValueError:  # the element is not in this file (or not explicit VR little endian): damage bytes instead
    return _flip(rng, raw, header=True)


def _flip(rng, raw: bytes, header: bool) -> bytes:
  out = bytearray(raw)
  end = _pixel_offset(raw) if header else len(raw)
  for _ in range(rng.integers(1, 9)):
    at = int(rng.integers(min(128, end - 1), end))
    out[at] ^= int(rng.integers(1, 256))
  return bytes(out)


def _nifti_mutant(rng, name: str) -> bytes:
  raw = open(os.path.join(NIB_DATA, name), 'rb').read()
  if name.endswith('.gz'):
    if rng.random() < 0.5:  # a cut-off gzip stream
      return raw[:rng.integers(0, len(raw))]
    raw = gzip.decompress(raw)
  raw = bytearray(raw)
  kind = rng.integers(4)
  if kind == 0:
    return bytes(raw[:rng.integers(0, len(raw))])
  if kind == 1:  # dim[] lies: up to 32767 per axis
    raw[40:56] = struct.pack('<8h', int(rng.integers(0, 8)), *rng.integers(-2, 32768, 7))
  elif kind == 2:  # damaged datatype / bitpix / pixdim / srow (affine) / vox_offset
    for _ in range(rng.integers(1, 6)):
      raw[int(rng.integers(68, 348))] ^= int(rng.integers(1, 256))
  else:
    raw[int(rng.integers(0, 348))] ^= int(rng.integers(1, 256))
  return bytes(raw)


def make_corpus(folder, num: int, seed: int) -> int:
  """`num` hostile files in `folder`; returns how many were written (all of them)."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for k in range(num):
    kind = rng.choice(['truncate', 'flip_header', 'flip_any', 'lie', 'lie', 'junk', 'nifti'])
    suffix = '.dcm'
    if kind == 'nifti':
      src = NIFTI_SOURCES[rng.integers(len(NIFTI_SOURCES))]
      data = _nifti_mutant(rng, src)
      suffix = '.nii' if rng.random() < 0.5 else '.nii.gz'
      if suffix == '.nii.gz' and data[:2] != b'\x1f\x8b' and rng.random() < 0.7:
        data = gzip.compress(data, mtime=0)
    elif kind == 'junk':
      data = rng.bytes(int(rng.integers(0, 5000)))
      if rng.random() < 0.5:
        data = bytes(128) + b'DICM' + data
      suffix = ('.dcm', '.nii', '.nii.gz', '')[rng.integers(4)]
    else:
      raw = _dicom_base(rng, DICOM_SOURCES[rng.integers(len(DICOM_SOURCES))])
      if kind == 'truncate':
        data = raw[:rng.integers(0, len(raw))]
      elif kind == 'lie':
        data = _lie(rng, raw)
        if rng.random() < 0.3:
          data = _lie(rng, data)
      else:
        data = _flip(rng, raw, header=kind == 'flip_header')
    with open(os.path.join(folder, f'{k:04d}_{kind}{suffix}'), 'wb') as f:
      f.write(data)
  return num


def _check_run(report, out, name, num_files):
  assert report['files_seen'] == num_files
  assert report['files_used'] + report['files_skipped'] == num_files, report  # every file accounted for
  assert all(isinstance(r['reason'], str) and r['reason'] for r in report['skipped_files'])
  src = records.TfdsSource(name, data_dir=str(out), split='train')
  good = sorted((src[i] for i in range(len(src)) if int(src[i]['num_slices']) == 3),
                key=lambda e: int(e['slice']))
  ref = pydicom.dcmread(scan_files.pydicom_file('CT_small.dcm')).pixel_array.astype(np.float32) - 1024.0
  assert len(good) == 3  # the real series, whole
  for k, e in enumerate(good):
    np.testing.assert_array_equal(e['hu'], np.clip(ref + 100 * k, -1024, 3071))
  text = json.dumps(report)
  for value in GOOD_PATIENT.values():  # reasons quote no header value
    assert value not in text


def test_fuzzed_files_among_a_real_series_are_skipped_with_reasons(tmp_path):
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'good'), 3, GOOD_PATIENT)
  num = make_corpus(inp / 'fuzz', 60, seed=13)
  report = prepare.prepare_scans(input_dir=str(inp), output=str(tmp_path / 'out'), name='fuzz', size=0,
                                 val_fraction=0, test_fraction=0)
  _check_run(report, tmp_path / 'out', 'fuzz', num + 3)
  assert report['files_skipped'] >= 40, report['skip_reasons']  # the corpus is hostile: most files go


def _communicate(proc, timeout):
  """proc.communicate, then reap it with wait4 so that `proc.peak_kib` is its own peak RSS (RUSAGE_CHILDREN
  would be the largest of every child this test session has reaped, training subprocesses included)."""
  import threading  # pylint: disable=g-import-not-at-top
  out = {}
  readers = [threading.Thread(target=lambda n=n: out.update({n: getattr(proc, n).read()})) for n in ('stdout', 'stderr')]
  for r in readers:  # one thread per pipe: neither can fill up and block the child
    r.start()
  _, status, usage = os.wait4(proc.pid, 0)
  for r in readers:
    r.join(timeout)
  proc.returncode = os.waitstatus_to_exitcode(status)
  proc.peak_kib = usage.ru_maxrss
  return out['stdout'], out['stderr']


@pytest.mark.slow
def test_a_thousand_fuzzed_files_run_through_the_command_with_bounded_memory(tmp_path):
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'good'), 3, GOOD_PATIENT)
  num = make_corpus(inp / 'fuzz', 1000, seed=2024)
  out = tmp_path / 'out'
  env = {**os.environ, 'PYTHONPATH': os.getcwd()}
  proc = subprocess.Popen([sys.executable, '-m', 'aigc_jax.prepare', f'--input={inp}', f'--output={out}',
                           '--name=fuzz', '--size=0', '--val_fraction=0', '--test_fraction=0'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  stdout, stderr = _communicate(proc, timeout=1200)
  assert proc.returncode == 0, stderr[-3000:]
  _check_run(json.load(open(out / 'fuzz' / 'prepare_report.json')), out, 'fuzz', num + 3)
  peak_gib = proc.peak_kib / 2 ** 20  # this process's own peak (measured: 0.16 GiB), not every child's so far
  assert peak_gib < 2.0, f'peak memory {peak_gib:.1f} GiB'
  for text in (stdout, stderr):  # the readers' own messages (tracebacks, paths) stay off the log
    assert 'Traceback' not in text and f'{inp}{os.sep}' not in text


def test_denoise_skips_reports_and_goes_on_as_prepare_does(tmp_path, monkeypatch):
  """The hostile files of test_scans.HOSTILE beside a real series: denoise writes the series and gives every
  other file a reason (the model is replaced by the identity: only finding and reading is tested here)."""
  from aigc_jax import denoise  # pylint: disable=g-import-not-at-top
  import test_scans  # pylint: disable=g-import-not-at-top

  from aigc_jax import restorer  # pylint: disable=g-import-not-at-top

  class Identity:
    description, pixel_mm, step = 'identity (test)', 0.66, 0
    trained_noise = None  # as a run on a prepared dataset: no simulated doses to compare with
    noise_note = restorer.Denoiser.noise_note  # the real estimate, on these hostile inputs too

    def __init__(self, workdir):
      del workdir

    def __call__(self, hu, batch=8, dihedral=False):
      return hu

  monkeypatch.setattr(denoise, 'Denoiser', Identity)
  inp = tmp_path / 'in'
  scan_files.ct_series(str(inp / 'good'), 2)
  for case, (make, _) in test_scans.HOSTILE.items():
    suffix = '.nii.gz' if case.endswith('_gz') else '.nii' if case.startswith('nifti') else '.dcm'
    (inp / f'{case}{suffix}').write_bytes(make())
  scan_files.enhanced_ct(str(inp / 'enhanced.dcm'), np.zeros((3, 4, 6), np.float32), [0, 1, 2], [1] * 3,
                         [-1024] * 3)
  report = denoise.denoise('unused', str(inp), str(tmp_path / 'out'))
  assert [w['slices'] for w in report['written']] == [2]
  assert len(report['skipped_files']) == len(test_scans.HOSTILE) + 1  # everything but the good series
  assert any('multi-frame' in p for p in report['problems'])
  # A header that breaks only when the writer re-reads it: that series is left out whole, the run goes on.
  scan_files.ct_series(str(inp / 'second'), 2)
  real_attributes = denoise.deid.image_attributes
  def flaky(ds):
    if 'second' in str(getattr(ds, 'filename', '')):
      raise NotImplementedError('Unknown Value Representation')
    return real_attributes(ds)
  monkeypatch.setattr(denoise.deid, 'image_attributes', flaky)
  report = denoise.denoise('unused', str(inp), str(tmp_path / 'out2'))
  assert [w['slices'] for w in report['written']] == [2]
  assert any('could not be written (NotImplementedError)' in p for p in report['problems'])
  written = [f for _, _, fs in os.walk(tmp_path / 'out2') for f in fs if f.endswith('.dcm')]
  assert len(written) == 2  # the good series only: nothing left of the one that failed half-way

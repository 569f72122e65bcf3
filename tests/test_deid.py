"""De-identification of what `prepare` and `denoise` write: a CT study and a NIfTI volume full of planted
identifiers (names, IDs, dates, free text, nested and private sequences, overlays, file meta, header
extensions) go through both commands, and no planted value reaches any output byte, log line or report."""

import contextlib
import gzip
import io
import logging
import os
import tempfile
import types
import warnings

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
import pytest

from aigc_jax.imaging import export
from aigc_jax import experiment
from aigc_jax.data import phantom
from aigc_jax.data import prepare
from aigc_jax.imaging import scans
import scan_files
from configs import ct_denoise

MARK = 'PLANTED'  # every planted text holds it: one search finds any planted text or a piece of one
UID_ROOT = '2.25.1717171717'  # input UIDs, none of which may reach the output
DATES = {'PatientBirthDate': '19370412', 'InstanceCreationDate': '19580923', 'StudyDate': '19620714',
         'SeriesDate': '19630815', 'AcquisitionDate': '19741105', 'ContentDate': '19750611',
         'PerformedProcedureStepStartDate': '19761230', 'PerformedProcedureStepEndDate': '19771121'}
TIMES = {'InstanceCreationTime': '081517.424242', 'StudyTime': '091618.434343', 'SeriesTime': '101719.444444',
         'AcquisitionTime': '111820.454545', 'ContentTime': '121921.464646',
         'PerformedProcedureStepStartTime': '132022.474747', 'PerformedProcedureStepEndTime': '142123.484848',
         'AcquisitionDateTime': '19741105111820.454545'}
TEXT = {'PatientBirthName': 'PLANTED^BIRTHNAME', 'OtherPatientNames': 'PLANTED^ALIAS',
        'PatientAddress': 'PLANTED ROAD 1', 'PatientMotherBirthName': 'PLANTED^MOTHER',
        'InstitutionName': 'PLANTED HOSPITAL', 'InstitutionAddress': 'PLANTED AVENUE 2',
        'InstitutionalDepartmentName': 'PLANTED DEPARTMENT', 'ReferringPhysicianName': 'PLANTED^REFERRER',
        'PerformingPhysicianName': 'PLANTED^PERFORMER', 'OperatorsName': 'PLANTED^OPERATOR',
        'StationName': 'PLANTED_STN', 'DeviceSerialNumber': 'PLANTED-SERIAL', 'AccessionNumber': 'PLANTED-ACC',
        'StudyID': 'PLANTED-SID', 'StudyDescription': 'PLANTED STUDY', 'SeriesDescription': 'PLANTED SERIES',
        'ProtocolName': 'PLANTED PROTOCOL OF DR WHO', 'RequestedProcedureDescription': 'PLANTED REQUEST',
        'PerformedProcedureStepID': 'PLANTED-PPSID', 'PerformedProcedureStepDescription': 'PLANTED PPS',
        'ImageComments': 'PLANTED COMMENT', 'PositionReferenceIndicator': 'PLANTED LANDMARK',
        'AdditionalPatientHistory': 'PLANTED HISTORY', 'PatientComments': 'PLANTED PATIENT COMMENT'}
PATIENTS = {'a': ('PLANTED^PATIENT^A', 'PLANTED-MRN-A'), 'b': ('PLANTED^PATIENT^B', 'PLANTED-MRN-B')}
# Input series: (folder, patient, study, frame of reference). Study 1 holds three series, two of them in one
# frame of reference; study 2 (another patient) one.
SERIES = (('s1', 'a', 1, 1), ('s2', 'a', 1, 1), ('s3', 'a', 1, 2), ('s4', 'b', 2, 3))
NIFTI_TEXT = {'descrip': 'PLANTED NIFTI DESCRIPTION', 'intent_name': 'PLANTED_INTENT',
              'aux_file': 'PLANTED_AUX', 'db_name': 'PLANTED_DB'}
# What a de-identified CT slice may hold, and the Type 1/2 attributes of CT Image Storage it must hold.
ALLOWED = {
    'SOPClassUID', 'SOPInstanceUID', 'Modality', 'ImageType', 'PatientName', 'PatientID', 'PatientBirthDate',
    'PatientSex', 'PatientIdentityRemoved', 'DeidentificationMethod', 'DeidentificationMethodCodeSequence',
    'LongitudinalTemporalInformationModified', 'StudyInstanceUID', 'StudyDate', 'StudyTime', 'StudyID',
    'AccessionNumber', 'ReferringPhysicianName', 'SeriesInstanceUID', 'SeriesNumber', 'SeriesDescription',
    'FrameOfReferenceUID', 'PositionReferenceIndicator', 'Manufacturer', 'InstanceNumber', 'ContentDate',
    'ContentTime', 'AcquisitionNumber', 'DerivationDescription', 'BurnedInAnnotation', 'PatientPosition',
    'PixelSpacing', 'ImagePositionPatient', 'ImageOrientationPatient', 'SliceThickness', 'SpacingBetweenSlices',
    'SamplesPerPixel', 'PhotometricInterpretation', 'Rows', 'Columns', 'BitsAllocated', 'BitsStored', 'HighBit',
    'PixelRepresentation', 'RescaleSlope', 'RescaleIntercept', 'RescaleType', 'KVP', 'WindowCenter',
    'WindowWidth', 'PixelData'}
TYPE_1 = ('SOPClassUID', 'SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID', 'FrameOfReferenceUID',
          'Modality', 'ImageType', 'SamplesPerPixel', 'PhotometricInterpretation', 'Rows', 'Columns',
          'BitsAllocated', 'BitsStored', 'HighBit', 'PixelRepresentation', 'PixelSpacing',
          'ImageOrientationPatient', 'ImagePositionPatient', 'RescaleIntercept', 'RescaleSlope', 'PixelData')
TYPE_2 = ('PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate', 'StudyTime',
          'ReferringPhysicianName', 'StudyID', 'AccessionNumber', 'SeriesNumber', 'PositionReferenceIndicator',
          'Manufacturer', 'InstanceNumber', 'SliceThickness', 'KVP', 'AcquisitionNumber')


def _item(**attributes) -> Dataset:
  ds = Dataset()  # pydicom 3 ignores keyword arguments to Dataset()
  for name, value in attributes.items():
    setattr(ds, name, value)
  return ds


def _code(value: str, meaning: str) -> Dataset:
  return _item(CodeValue=value, CodingSchemeDesignator='99PLANTED', CodeMeaning=meaning)


def _planted_slice(folder: str, patient: str, study: int, frame: int, k: int) -> Dataset:
  """pydicom's CT_small.dcm with every identifier of issue 13 item 2 planted, at z = 5·k."""
  ds = pydicom.dcmread(scan_files.pydicom_file('CT_small.dcm'))
  for name, value in {**DATES, **TIMES, **TEXT}.items():
    setattr(ds, name, value)
  ds.PatientName, ds.PatientID = PATIENTS[patient]
  ds.StudyInstanceUID = f'{UID_ROOT}.1.{study}'
  ds.SeriesInstanceUID = f'{UID_ROOT}.2.{folder[1:]}'
  ds.FrameOfReferenceUID = f'{UID_ROOT}.3.{frame}'
  ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f'{UID_ROOT}.4.{folder[1:]}.{k}'
  ds.ImagePositionPatient = [-158.135803, -179.035797, 5.0 * k]
  ds.OtherPatientIDsSequence = [_item(PatientID='PLANTED-OTHER-ID', IssuerOfPatientID='PLANTED ISSUER')]
  ds.OperatorIdentificationSequence = [_item(
      PersonIdentificationCodeSequence=[_code('PLANTED-OP', 'PLANTED OPERATOR CODE')],
      InstitutionName='PLANTED OPERATOR HOSPITAL', PersonAddress='PLANTED OPERATOR ADDRESS')]
  ds.InstitutionCodeSequence = [_code('PLANTED-INST', 'PLANTED INSTITUTION CODE')]
  ds.ReferencedPerformedProcedureStepSequence = [_item(
      ReferencedSOPClassUID='1.2.840.10008.3.1.2.3.3', ReferencedSOPInstanceUID=f'{UID_ROOT}.5.{study}')]
  ds.RequestAttributesSequence = [_item(  # three levels deep: sequence → item → sequence → item
      RequestedProcedureID='PLANTED-RPID', ScheduledProcedureStepID='PLANTED-SPSID',
      ReferencedStudySequence=[_item(ReferencedSOPClassUID='1.2.840.10008.3.1.2.3.1',
                                       ReferencedSOPInstanceUID=f'{UID_ROOT}.6.{study}')],
      ScheduledProtocolCodeSequence=[_code('PLANTED-PROTO', 'PLANTED^NESTED^NAME')])]
  for group in (0x6000, 0x6002):  # two overlay planes, one with a description and a label
    ds.add_new((group, 0x0010), 'US', 128)
    ds.add_new((group, 0x0011), 'US', 128)
    ds.add_new((group, 0x0040), 'CS', 'G')
    ds.add_new((group, 0x0050), 'SS', [1, 1])
    ds.add_new((group, 0x0100), 'US', 1)
    ds.add_new((group, 0x0102), 'US', 0)
    ds.add_new((group, 0x3000), 'OW', b'PLANTED OVERLAY BITS'.ljust(128 * 128 // 8, b'\x01'))
  ds.add_new(0x60000022, 'LO', 'PLANTED OVERLAY DESCRIPTION')
  ds.add_new(0x60001500, 'LO', 'PLANTED OVERLAY LABEL')
  block = ds.private_block(0x0041, 'PLANTED CREATOR', create=True)
  block.add_new(0x01, 'LO', 'PLANTED PRIVATE VALUE')
  block.add_new(0x02, 'OB', 'PLANTED UTF-16 VALUE'.encode('utf-16-le'))
  block.add_new(0x03, 'SQ', Sequence([_item(PatientName='PLANTED^IN^PRIVATE^SEQUENCE')]))
  ds.file_meta.SourceApplicationEntityTitle = 'PLANTED_AE'
  ds.file_meta.ImplementationVersionName = 'PLANTED_IMPL'
  ds.file_meta.add_new(0x00020100, 'UI', f'{UID_ROOT}.7')  # PrivateInformationCreatorUID
  ds.file_meta.add_new(0x00020102, 'OB', b'PLANTED META PRIVATE')
  ds.PixelData = (ds.pixel_array.astype(np.int16) + np.int16(100 * k)).tobytes()
  return ds


def _planted_nifti(path: str):
  """An LPS-ordered int16 NIfTI (3 phantom slices of 24 × 20) with planted header text and extensions."""
  hu = np.stack([phantom.PhantomCT(seed=5, size=24, num_examples=3)[i]['hu'][:, 2:22] for i in range(3)])
  img = nib.Nifti1Image(np.round(hu.transpose(2, 1, 0)).astype(np.int16), None)
  lps = np.diag([-0.8, -0.8, 2.0, 1.0])
  img.set_qform(lps, code=1)
  img.set_sform(lps, code=3)
  for name, value in NIFTI_TEXT.items():
    img.header[name] = value.encode()
  img.header.extensions.append(nib.nifti1.Nifti1Extension('comment', b'PLANTED EXTENSION TEXT'))
  img.header.extensions.append(nib.nifti1.Nifti1Extension(
      'comment', 'PLANTED UTF-16 EXTENSION'.encode('utf-16-le')))
  nib.save(img, path)


@contextlib.contextmanager
def _everything_printed(into: list):
  """Collects what the code inside prints (on file descriptors 1 and 2 too, so native libraries' output),
  logs at any level and warns, and appends it to `into` as bytes."""
  records, text = io.StringIO(), io.StringIO()
  handler = logging.StreamHandler(records)
  root = logging.getLogger()
  level = root.level
  root.addHandler(handler)
  root.setLevel(logging.DEBUG)
  saved = [os.dup(1), os.dup(2)]
  with tempfile.TemporaryFile() as fds, warnings.catch_warnings(record=True) as warned, \
      contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
    warnings.simplefilter('always')
    os.dup2(fds.fileno(), 1)
    os.dup2(fds.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
      root.removeHandler(handler)
      root.setLevel(level)
      fds.seek(0)
      into.append(fds.read() + (text.getvalue() + records.getvalue()).encode()
                  + '\n'.join(f'{w.category.__name__}: {w.message}' for w in warned).encode())


def _all_bytes(root: str) -> bytes:
  """Every file under `root`, gzip files decompressed (a .nii.gz would hide a planted string), and every path."""
  out = []
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      data = open(path, 'rb').read()
      out += [path.encode(), data]
      if data[:2] == b'\x1f\x8b':
        out.append(gzip.decompress(data))
  return b'\n'.join(out)


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
  """Trains the tiny restoration run, plants the study and the volume, and runs prepare and denoise once."""
  from aigc_jax import denoise  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('deid')
  run, inp = root / 'run', root / 'input'
  experiment.train_and_evaluate(ct_denoise.get_config('test'), str(run))
  for folder, patient, study, frame in SERIES:
    for k in range(2):
      scan_files.write(_planted_slice(folder, patient, study, frame, k),
                       str(inp / 'PLANTED_PATIENT_FOLDER' / folder / f'PLANTED_FILE_{k}.dcm'))
  _planted_nifti(str(inp / 'PLANTED_VOLUME.nii.gz'))
  printed = []
  with _everything_printed(printed):
    print('canary 1')  # one through each way out, to show that each is collected
    os.write(2, b'canary 2')
    logging.getLogger('aigc_jax.test').debug('canary 3')
    warnings.warn('canary 4')
    prepared = prepare.prepare_scans(input_dir=str(inp), output=str(root / 'tfds'), name='deid', size=0,
                                     val_fraction=0, test_fraction=0)
    report = denoise.denoise(str(run), str(inp), str(root / 'out'))
  return types.SimpleNamespace(root=root, input=inp, out=root / 'out', report=report, prepared=prepared,
                               printed=printed[0], files=scans.list_files(str(inp)))


PLANTED_TEXTS = [*TEXT.values(), *NIFTI_TEXT.values(), *(v for p in PATIENTS.values() for v in p),
                 'PLANTED_AE', 'PLANTED_IMPL', 'PLANTED OVERLAY LABEL', 'PLANTED^NESTED^NAME',
                 'PLANTED^IN^PRIVATE^SEQUENCE', 'PLANTED EXTENSION TEXT', UID_ROOT, *DATES.values(),
                 *TIMES.values()]


def _needles() -> list[bytes]:
  texts = PLANTED_TEXTS + [MARK, MARK.lower()]
  for date in DATES.values():
    texts += [f'{date[:4]}-{date[4:6]}-{date[6:]}', f'{date[6:]}.{date[4:6]}.{date[:4]}',
              f'{date[4:6]}/{date[6:]}/{date[:4]}']
  return [t.encode(enc) for t in texts for enc in ('ascii', 'utf-16-le', 'utf-16-be')]


def test_no_planted_value_reaches_any_output_byte_log_line_or_report(pipeline):
  assert pipeline.prepared['counts']['train']['volumes'] == 5, pipeline.prepared
  assert sorted(w['kind'] for w in pipeline.report['written']) == ['dicom'] * 4 + ['nifti']
  assert not pipeline.report['problems']
  planted = _all_bytes(str(pipeline.input))
  for text in PLANTED_TEXTS + ['PLANTED UTF-16 VALUE', 'PLANTED UTF-16 EXTENSION']:
    assert text.encode() in planted or text.encode('utf-16-le') in planted, text  # the input does hold it
  assert all(f'canary {i}'.encode() in pipeline.printed for i in range(1, 5)), pipeline.printed[-2000:]
  for where, blob in (('prepare output', _all_bytes(str(pipeline.root / 'tfds'))),
                      ('denoise output', _all_bytes(str(pipeline.out))),
                      ('printed, logged or warned', pipeline.printed),
                      ('returned reports', repr((pipeline.prepared, pipeline.report)).encode())):
    for needle in _needles():
      assert needle not in blob, (where, needle)
  # Beyond the planted values: no text or binary value of any input slice outside the allow-list.
  out, checked = _all_bytes(str(pipeline.out)), 0
  for path in pipeline.files:
    if path.endswith('.dcm'):
      ds = pydicom.dcmread(path)
      for elem in [*ds.file_meta, *ds.iterall()]:
        if elem.keyword in ALLOWED or elem.VR == 'SQ':
          continue
        value = elem.value
        if isinstance(value, bytes):
          if len(value) >= 8 and len(set(value)) >= 4:
            assert value not in out, elem
            checked += 1
        elif elem.VR in ('AE', 'AS', 'CS', 'DA', 'DT', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UT'):
          text = '\\'.join(map(str, value)) if isinstance(value, pydicom.multival.MultiValue) else str(value)
          if len(text) >= 5 and not text.startswith('1.2.840.10008.'):
            assert text.encode() not in out, elem
            checked += 1
  assert checked > 8 * 60, checked  # the walk did reach the values (83 a slice)


def test_denoised_dicom_holds_only_the_allow_list_and_says_it_is_de_identified(pipeline):
  written = [pydicom.dcmread(p) for p in sorted(pipeline.out.rglob('*.dcm'))]
  assert len(written) == 8
  for ds in written:
    assert {e.keyword for e in ds} <= ALLOWED, {e.keyword for e in ds} - ALLOWED
    assert not any(e.tag.is_private or e.tag.group & 0xFF00 == 0x6000 for e in ds)
    assert set(TYPE_1 + TYPE_2) <= {e.keyword for e in ds}, set(TYPE_1 + TYPE_2) - {e.keyword for e in ds}
    assert all(ds[k].value not in (None, '') for k in TYPE_1), [k for k in TYPE_1 if ds[k].value in (None, '')]
    assert ds.SOPClassUID == export.CT_IMAGE_STORAGE and list(ds.ImageType[:2]) == ['DERIVED', 'SECONDARY']
    assert ds.PatientIdentityRemoved == 'YES' and ds.LongitudinalTemporalInformationModified == 'REMOVED'
    assert 'PS3.15' in ' '.join(ds.DeidentificationMethod) and 'aigc_jax' in ' '.join(ds.DeidentificationMethod)
    code = ds.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ('113100', 'DCM')
    assert all(ds[k].value in (None, '') for k in ds.keys() if ds[k].VR in ('DA', 'DT', 'TM'))
    assert 'DENOISED' in ds.SeriesDescription and 'aigc_jax' in ds.DerivationDescription
    assert ds.PositionReferenceIndicator in (None, '') and float(ds.KVP) == 120.0  # free text goes; numbers stay
    meta = {e.keyword for e in ds.file_meta}
    assert not {'SourceApplicationEntityTitle', 'PrivateInformation', 'PrivateInformationCreatorUID'} & meta
    assert ds.file_meta.ImplementationClassUID == export.IMPLEMENTATION_CLASS_UID
    assert ds.file_meta.ImplementationVersionName == export.IMPLEMENTATION_VERSION


def test_series_of_one_input_study_stay_one_study_and_frames_of_reference_map_one_to_one(pipeline):
  by_folder = {}
  for n, w in enumerate(pipeline.report['written']):
    if w['kind'] == 'dicom':
      src = pydicom.dcmread(pipeline.files[w['input_files'][0]], stop_before_pixels=True)
      out = [pydicom.dcmread(p) for p in sorted((pipeline.out / f'series_{n}').glob('*.dcm'))]
      by_folder[str(src.SeriesInstanceUID).rsplit('.', 1)[1]] = out
  one = {folder: {k: {str(ds.get(k)) for ds in out} for k in
                  ('StudyInstanceUID', 'FrameOfReferenceUID', 'SeriesInstanceUID', 'PatientID')}
         for folder, out in by_folder.items()}
  assert all(len(v) == 1 for uids in one.values() for v in uids.values())  # each constant within a series
  get = lambda folder, key: next(iter(one[folder][key]))
  assert get('1', 'StudyInstanceUID') == get('2', 'StudyInstanceUID') == get('3', 'StudyInstanceUID')
  assert get('4', 'StudyInstanceUID') != get('1', 'StudyInstanceUID')
  assert get('1', 'FrameOfReferenceUID') == get('2', 'FrameOfReferenceUID')
  assert len({get(f, 'FrameOfReferenceUID') for f in ('1', '3', '4')}) == 3
  assert len({get(f, 'SeriesInstanceUID') for f in '1234'}) == 4
  assert get('1', 'PatientID') == get('3', 'PatientID') != get('4', 'PatientID')  # stand-ins, not the MRNs
  uids = [str(ds[k].value) for out in by_folder.values() for ds in out
          for k in ('StudyInstanceUID', 'SeriesInstanceUID', 'FrameOfReferenceUID', 'SOPInstanceUID')]
  assert not any(u.startswith(UID_ROOT) for u in uids)
  assert len({str(ds.SOPInstanceUID) for out in by_folder.values() for ds in out}) == 8


def test_denoised_nifti_header_is_written_fresh_with_the_input_geometry(pipeline):
  n = [w['kind'] for w in pipeline.report['written']].index('nifti')
  vol = nib.load(str(pipeline.out / f'volume_{n}.nii.gz'))
  src = nib.load(pipeline.files[pipeline.report['written'][n]['input_files'][0]])
  assert not list(vol.header.extensions)
  for name in ('intent_name', 'aux_file', 'db_name'):
    assert vol.header[name].item() == b'', name
  assert vol.header['descrip'].item().startswith(b'DENOISED aigc_jax')
  assert (int(vol.header['qform_code']), int(vol.header['sform_code'])) == (1, 3)  # the input's codes
  np.testing.assert_allclose(vol.affine, src.affine, atol=1e-6)
  np.testing.assert_allclose(vol.header.get_qform(), src.header.get_qform(), atol=1e-6)
  assert vol.shape == src.shape and vol.get_data_dtype() == src.get_data_dtype()
  assert vol.header.get_xyzt_units()[0] == 'mm'


def test_allowed_attributes_are_remade_from_their_numbers_and_malformed_ones_dropped_silently(caplog):
  from pydicom.dataelem import RawDataElement  # pylint: disable=g-import-not-at-top
  from pydicom.tag import Tag  # pylint: disable=g-import-not-at-top
  from aigc_jax.imaging import deid  # pylint: disable=g-import-not-at-top
  ds = Dataset()
  for keyword, vr, raw in (('KVP', 'DS', b'PLANTED '), ('PatientPosition', 'CS', b'PLANTED '),
                           ('WindowCenter', 'DS', b'40\\PLANTED '), ('WindowWidth', 'DS', b'400 '),
                           ('PixelSpacing', 'DS', b'0.500000\\0.5 '), ('SpacingBetweenSlices', 'DS', b'nan '),
                           ('SliceThickness', 'DS', b'5.000000'), ('RescaleSlope', 'DS', b'0 '),
                           ('ImagePositionPatient', 'DS', b'1\\2 '), ('BitsStored', 'US', b'\x0c\x00'),
                           ('BurnedInAnnotation', 'CS', b'NO')):
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)  # as read from a malformed file
  caplog.set_level(logging.DEBUG)
  with warnings.catch_warnings(record=True) as warned:
    warnings.simplefilter('always')
    kept = deid.image_attributes(ds)
  assert kept == {'WindowCenter': 40.0, 'WindowWidth': 400.0, 'PixelSpacing': [0.5, 0.5], 'SliceThickness': 5.0,
                  'BitsStored': 12, 'BurnedInAnnotation': 'NO'}  # text, NaN, slope 0, 2 of 3 values: dropped
  assert [str(v) for v in kept['PixelSpacing']] == ['0.5', '0.5']  # written as the number, not the input text
  assert not warned and MARK not in caplog.text

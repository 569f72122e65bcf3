"""De-identification of images derived from users' scans, as an allow-list.

An output DICOM slice is built fresh (`export.ct_dataset`); from its input slice it takes only what the
image needs, each value re-made from its parsed number or checked against a short list of defined terms, so
free text cannot ride along in an allowed attribute:

  pixel encoding  BitsStored, PixelRepresentation, RescaleSlope, RescaleIntercept
  geometry        PixelSpacing, ImagePositionPatient, ImageOrientationPatient, SliceThickness,
                  SpacingBetweenSlices, PatientPosition
  acquisition     KVP
  display         WindowCenter, WindowWidth (the first pair), BurnedInAnnotation (YES / NO)

Everything else is gone by construction: names, IDs, dates and times, institutions, staff, free-text
descriptions (ProtocolName, RequestedProcedureDescription, ...), every sequence (nested identifiers, referenced
steps and studies), private tags, overlay planes (60xx), the input's file meta and UIDs. What DICOM PS3.15's
Basic Application Level Confidentiality Profile (Annex E, code 113100) removes or replaces is therefore removed
or replaced; `identity` states it in the output (PatientIdentityRemoved, DeidentificationMethod and its code
sequence). Dates are emptied rather than shifted (LongitudinalTemporalInformationModified REMOVED), and the
Type 2 ones stay present but empty.

UIDs and the patient ID are replaced by random stand-ins (`Surrogates`): consistent within one run, so slices
of a series, series of a study (one new Study UID per input study) and studies of a patient stay together,
but random and never written, so they map back to nothing.
"""

import logging
import math
import secrets
import warnings

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid
from pydicom.valuerep import DSfloat

BASIC_PROFILE = ('113100', 'DCM', 'Basic Application Confidentiality Profile')
METHOD = ('DICOM PS3.15 Basic Application Confidentiality Profile',
          'aigc_jax allow-list: pixels, geometry, rescale kept')
PATIENT_NAME = 'DENOISED^ANONYMOUS'
# DICOM PS3.3 C.7.3.1.1.2 defined terms: a value outside them is dropped, not copied.
PATIENT_POSITIONS = frozenset(('HFP', 'HFS', 'HFDR', 'HFDL', 'FFDR', 'FFDL', 'FFP', 'FFS', 'LFP', 'LFS', 'RFP',
                               'RFS', 'AFDR', 'AFDL', 'PFDR', 'PFDL'))


def _values(value) -> list:
  return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _decimals(n: int, *, positive: bool = False, nonzero: bool = False, first: bool = False):
  """A check for a DS attribute of `n` values (or the first of several presets, `first`): the values are
  re-made from their numbers, at most 16 characters each as DS allows."""
  def clean(value):
    values = _values(value)[:1] if first else _values(value)
    if len(values) != n:
      raise ValueError(f'{len(values)} values, not {n}')
    numbers = [float(v) for v in values]
    if not all(math.isfinite(x) and (x > 0 or not positive) and (x != 0 or not nonzero) for x in numbers):
      raise ValueError('out of range')
    out = [DSfloat(x, auto_format=True) for x in numbers]
    return out if n > 1 else out[0]
  return clean


def _integer(lo: int, hi: int):
  def clean(value):
    x = int(value)
    if not lo <= x <= hi:
      raise ValueError('out of range')
    return x
  return clean


def _term(allowed):
  def clean(value):
    text = str(value).strip().upper()
    if text not in allowed:
      raise ValueError('not a defined term')
    return text
  return clean


KEEP = {
    'BitsStored': _integer(1, 16), 'PixelRepresentation': _integer(0, 1),
    'RescaleSlope': _decimals(1, nonzero=True), 'RescaleIntercept': _decimals(1),
    'PixelSpacing': _decimals(2, positive=True), 'ImagePositionPatient': _decimals(3),
    'ImageOrientationPatient': _decimals(6), 'SliceThickness': _decimals(1, positive=True),
    'SpacingBetweenSlices': _decimals(1, positive=True), 'PatientPosition': _term(PATIENT_POSITIONS),
    'KVP': _decimals(1, positive=True),
    'WindowCenter': _decimals(1, first=True), 'WindowWidth': _decimals(1, positive=True, first=True),
    'BurnedInAnnotation': _term(('YES', 'NO')),
}


def image_attributes(ds) -> dict:
  """The allow-listed attributes of one input slice (`KEEP`), each re-made from its parsed value.

  A missing, empty or malformed one is left out; parsing neither logs nor warns (pydicom's messages about a
  malformed value quote it, and it could be anything).
  """
  out = {}
  logger = logging.getLogger('pydicom')
  disabled, logger.disabled = logger.disabled, True
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      for name, clean in KEEP.items():
        try:
          value = ds.get(name)
          if value is None or value == '':
            continue
          out[name] = clean(value)
        except Exception:  # pylint: disable=broad-except  # a bad value of any kind is simply not copied
          continue
  finally:
    logger.disabled = disabled
  if ('WindowCenter' in out) != ('WindowWidth' in out):  # a window needs both
    out.pop('WindowCenter', None)
    out.pop('WindowWidth', None)
  return out


def identity(patient_id: str) -> dict:
  """The patient, study and de-identification attributes of a de-identified slice: stand-ins, empty Type 2
  values and the statement of what was done."""
  code = Dataset()
  code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE
  return {
      'PatientName': PATIENT_NAME, 'PatientID': patient_id, 'PatientBirthDate': '', 'PatientSex': '',
      'StudyDate': '', 'StudyTime': '', 'ContentDate': '', 'ContentTime': '', 'StudyID': '',
      'AccessionNumber': '', 'ReferringPhysicianName': '', 'PositionReferenceIndicator': '',
      'PatientIdentityRemoved': 'YES', 'DeidentificationMethod': list(METHOD),
      'DeidentificationMethodCodeSequence': [code],
      'LongitudinalTemporalInformationModified': 'REMOVED',
  }


class Surrogates:
  """Random stand-ins for input identifiers, the same one for the same input within one run.

  Randomness is deliberately unseeded here: a reproducible stand-in would let whoever knows the seed and the
  input order re-create, and so link, them. The table lives in memory only.
  """

  def __init__(self):
    self._table = {}

  def uid(self, kind: str, old: str) -> str:
    """A new UID for the input's `kind` ('study', 'frame', ...) identifier `old`."""
    if (kind, old) not in self._table:
      self._table[kind, old] = generate_uid()  # uuid4-based, under pydicom's UID root
    return self._table[kind, old]

  def patient_id(self, old: str) -> str:
    """A new PatientID for the input's patient key `old`."""
    if ('patient', old) not in self._table:
      self._table['patient', old] = f'ANON-{secrets.token_hex(6).upper()}'
    return self._table['patient', old]

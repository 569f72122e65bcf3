"""Writing generated images where clinicians' tools open them: DICOM CT objects and NIfTI stacks.

Every DICOM file says, in several places a viewer shows, that it is synthetic: PatientName
SYNTHETIC^IMAGE, ImageType DERIVED\\SECONDARY, BurnedInAnnotation NO, and a SeriesDescription and
ImageComments naming the model, the training step and a hash of the config. Nothing from any real patient is
used; all UIDs are new. Pixels are stored as unsigned 16-bit values v with HU = v − 1024
(RescaleSlope 1, RescaleIntercept −1024), the usual CT encoding.

`ct_dataset` and `nifti_image` build every file from nothing, here and in `aigc_jax.denoise` (which adds
only the allow-listed attributes of its input, `aigc_jax.imaging.deid`), so no writer carries over a header.
"""

import datetime
import hashlib
import json
import os

import numpy as np

from aigc_jax.core.privacy import accountant

CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2'
HU_OFFSET = 1024
# Our file meta, in place of whatever wrote the input: generate_uid(entropy_srcs=['aigc_jax']), a fixed UID
# under pydicom's root (pydicom offers its root for this).
IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.8.498.54009025664434849285171331378917598270'
IMPLEMENTATION_VERSION = 'AIGC_JAX'
# Type 2 attributes of CT Image Storage (DICOM PS3.3 A.3 and the modules it lists): present, empty unless given.
TYPE_2 = ('PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate', 'StudyTime',
          'ReferringPhysicianName', 'StudyID', 'AccessionNumber', 'SeriesNumber', 'PositionReferenceIndicator',
          'Manufacturer', 'InstanceNumber', 'ContentDate', 'ContentTime', 'SliceThickness', 'KVP',
          'AcquisitionNumber')
# Type 1 values no caller can leave to a default.
REQUIRED = ('StudyInstanceUID', 'SeriesInstanceUID', 'FrameOfReferenceUID', 'PixelSpacing', 'ImagePositionPatient',
            'ImageOrientationPatient', 'RescaleSlope', 'RescaleIntercept')


def config_hash(config_json: str) -> str:
  return hashlib.sha256(config_json.encode()).hexdigest()[:12]


def ct_dataset(stored: np.ndarray, attributes: dict):
  """A fresh CT Image Storage object holding `stored` pixels and `attributes` (keyword → value), nothing else.

  Both DICOM writers (synthetic samples here, denoised scans in `aigc_jax.denoise`) build every slice with it,
  so a file holds exactly the fixed CT values below, the Type 2 attributes (empty unless given), a new SOP
  Instance UID, file meta written fresh under our implementation UID, and what the caller passes.

  Args:
    stored: one [H, W] image of stored values, uint16 or int16 (sets PixelRepresentation).
    attributes: at least `REQUIRED`; any other keyword overrides the defaults (ImageType, BitsStored, ...).
  """
  from pydicom.datadict import tag_for_keyword  # pylint: disable=g-import-not-at-top
  from pydicom.dataset import FileDataset, FileMetaDataset  # pylint: disable=g-import-not-at-top
  from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # pylint: disable=g-import-not-at-top

  stored = np.asarray(stored)
  if stored.ndim != 2 or stored.dtype not in (np.uint16, np.int16):
    raise ValueError(f'ct_dataset expects one [H, W] image of uint16 or int16 stored values, got '
                     f'{stored.dtype} {stored.shape}; convert HU with the rescale first.')
  missing = [k for k in REQUIRED if k not in attributes]
  unknown = [k for k in attributes if tag_for_keyword(k) is None]
  if missing or unknown:
    raise ValueError(f'ct_dataset: attributes lack {missing} / have no DICOM keyword {unknown}; pass the UIDs, '
                     'geometry and rescale of the slice under their DICOM keywords.')
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
  meta.ImplementationVersionName = IMPLEMENTATION_VERSION
  ds = FileDataset('', {}, file_meta=meta, preamble=b'\0' * 128)
  for name in TYPE_2:
    setattr(ds, name, '')
  ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
  ds.Modality = 'CT'
  ds.ImageType = ['DERIVED', 'SECONDARY', 'AXIAL']
  ds.Rows, ds.Columns = stored.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored = 16, 16
  ds.RescaleType = 'HU'
  for name, value in attributes.items():
    setattr(ds, name, value)
  ds.HighBit = int(ds.BitsStored) - 1
  ds.PixelRepresentation = int(stored.dtype == np.int16)
  ds.PixelData = stored.tobytes()
  ds['PixelData'].VR = 'OW'
  return ds


def write_dicom_series(hu: np.ndarray, folder: str, *, pixel_mm: float, description: str,
                       slice_mm: float = 0.0, window: tuple[float, float] = (40.0, 400.0)) -> list[str]:
  """Writes [N, H, W] HU images as one synthetic CT series of N files; returns their paths.

  Args:
    hu: images in Hounsfield units (clipped to −1024…64511 to fit the encoding).
    folder: created if missing; files are IMG0000.dcm, IMG0001.dcm, ...
    pixel_mm: in-plane pixel spacing.
    description: what made them (model, step, config hash); goes into SeriesDescription and ImageComments.
    slice_mm: spacing between consecutive images when they form a volume; 0 for independent samples. Those
      are independent images, not a volume, so each is its own acquisition (AcquisitionNumber = index); they
      still get their own positions, z = index × SliceThickness (= pixel_mm), because viewers and readers
      (ours included) take several images at one position in a series for a broken series and stack or
      reject them.
    window: (centre, width) for the viewer's default display.
  """
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom.uid import generate_uid  # pylint: disable=g-import-not-at-top

  hu = np.asarray(hu, np.float32)
  if hu.ndim != 3:
    raise ValueError(f'write_dicom_series expects [N, H, W] images, got shape {hu.shape}.')
  os.makedirs(folder, exist_ok=True)
  now = datetime.datetime.now()
  date, time = now.strftime('%Y%m%d'), now.strftime('%H%M%S')
  thickness = float(slice_mm or pixel_mm)
  series = {
      'StudyInstanceUID': generate_uid(), 'SeriesInstanceUID': generate_uid(),
      'FrameOfReferenceUID': generate_uid(), 'PatientName': 'SYNTHETIC^IMAGE', 'PatientID': 'SYNTHETIC',
      'PatientSex': 'O', 'StudyDate': date, 'SeriesDate': date, 'ContentDate': date, 'StudyTime': time,
      'SeriesTime': time, 'ContentTime': time, 'StudyID': 'SYNTH',
      'Manufacturer': 'aigc_jax (synthetic image, no scanner)', 'SeriesDescription': f'SYNTHETIC {description}'[:64],
      'ImageComments': f'Synthetic image generated by aigc_jax, not a patient scan. {description}',
      'BurnedInAnnotation': 'NO', 'SeriesNumber': 1, 'ImageOrientationPatient': [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
      'SliceThickness': thickness, 'PixelSpacing': [float(pixel_mm), float(pixel_mm)],
      'RescaleSlope': 1, 'RescaleIntercept': -HU_OFFSET,
      'WindowCenter': float(window[0]), 'WindowWidth': float(window[1])}
  paths = []
  for i, img in enumerate(hu):
    stored = np.clip(np.round(img) + HU_OFFSET, 0, 65535).astype(np.uint16)
    ds = ct_dataset(stored, {**series, 'InstanceNumber': i + 1, 'AcquisitionNumber': 1 if slice_mm else i + 1,
                             'ImagePositionPatient': [0.0, 0.0, i * thickness]})
    path = os.path.join(folder, f'IMG{i:04d}.dcm')
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    paths.append(path)
  return paths


def nifti_affine(pixel_mm: float, slice_mm: float) -> np.ndarray:
  """RAS+ affine for a stack stored as data[x, y, z] (see `write_nifti`)."""
  return np.diag([pixel_mm, pixel_mm, slice_mm or pixel_mm, 1.0])


def nifti_image(data: np.ndarray, affine: np.ndarray, *, descrip: str, dtype=None, like=None):
  """A NIfTI-1 image whose header is made fresh: the affine, the data type (nibabel picks scl_slope/inter for
  it on save), spatial units and `descrip`, nothing else.

  With `like` (an input's header), its qform and sform with their codes and its spatial unit are taken over,
  and only those: its extensions, intent, aux_file, db_name and descrip are never read.
  """
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
  unit = 'mm'
  if like is not None:
    sform, scode = like.get_sform(coded=True)
    qform, qcode = like.get_qform(coded=True)
    img.set_sform(sform, code=int(scode))
    img.set_qform(qform, code=int(qcode))
    unit = like.get_xyzt_units()[0] if like.get_xyzt_units()[0] != 'unknown' else unit
  if dtype is not None:
    img.set_data_dtype(dtype)
  img.header.set_xyzt_units(unit)
  img.header['descrip'] = descrip.encode()[:79]
  return img


def write_nifti(hu: np.ndarray, path: str, *, pixel_mm: float, slice_mm: float = 0.0,
                description: str = '') -> str:
  """Writes [N, H, W] images (radiological view, as everywhere in aigc_jax) as one NIfTI volume.

  The inverse of how `data.scans` reads NIfTI: voxel +x toward the patient's right, +y anterior, so
  image column → reversed x, image row → reversed y, image index → z.
  """
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  hu = np.asarray(hu, np.float32)
  data = np.ascontiguousarray(hu.transpose(2, 1, 0)[::-1, ::-1, :])
  img = nifti_image(data, nifti_affine(pixel_mm, slice_mm), descrip=f'SYNTHETIC aigc_jax {description}')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  nib.save(img, path)
  return path


def provenance(workdir: str, step: int, config_json: str, extra: dict | None = None) -> str:
  """One line naming what made an image: the task, model, step and config hash, and for a differentially
  private run the (ε, δ) its parameters at `step` carry."""
  cfg = json.loads(config_json)
  record = accountant.read_record(workdir)
  return (f'{cfg.get("task", {}).get("name", "?")}/{cfg.get("model", {}).get("name", "?")} '
          f'step {step} config {config_hash(config_json)} {os.path.basename(os.path.abspath(workdir))}'
          + (' ' + json.dumps(extra, sort_keys=True) if extra else '')
          + (' ' + accountant.statement(record, step) if record else ''))

r"""Applies a trained restoration model (configs/ct_denoise.py) to the user's own CT: DICOM or NIfTI in, the
same format out, geometry kept.

  python -m aigc_jax.denoise --workdir=runs/ct_denoise --input=SCANS --output=DENOISED

Every CT series and NIfTI volume under `--input` is found and ordered as `aigc_jax.prepare` does, and
each axial slice goes through the model at its own resolution (the networks are fully convolutional). The
model sees slices in the config's HU window; its correction is applied to the HU where the input lies inside
that window, and HU outside it (dense bone, metal, air beyond −1000) are kept, so nothing is clipped away.

Output, `--output/series_<n>/IMG<k>.dcm` or `--output/volume_<n>.nii.gz`:
  DICOM  for each input slice a new CT object with the denoised pixels and, from the input, only what the
         image needs (rows, columns, pixel encoding, rescale, spacing, position, orientation; the allow-list
         is `aigc_jax.imaging.deid`), marked DERIVED\SECONDARY with the model in SeriesDescription /
         DerivationDescription and de-identified per DICOM PS3.15's basic profile: random new UIDs (one Study
         UID per input study, Frame-of-Reference UIDs one to one), a random per-run PatientID, empty dates
         (this codebase never writes patient identifiers; re-link through your own records).
  NIfTI  the same voxel grid, affine, qform/sform codes and data type, in the input's voxel order, in a
         header written fresh (nothing else of the input's header: no extensions or text fields).
`--output/denoise_report.json` numbers inputs by their place in `find INPUT -type f | sort`, never by name.

Noise: for each series the noise it estimates (`denoisers.noise_sigma_hu` in the body, the median over its
slices: an index of the level, comparable between scans) beside the range of the same index over the doses the
model was trained at (a 300 mm water cylinder scanned on the run's grid at its lowest and highest training
dose), with a warning in the report and on the console when the series lies far outside it (below half the
lowest or above 1.5× the highest): a denoiser trained for quarter-dose noise does little for a noisier scan and
may smooth a cleaner one.
"""

import json
import os
import shutil
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax.imaging import export  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.imaging import deid  # noqa: E402
from aigc_jax.imaging import scans  # noqa: E402
from aigc_jax.restorer import Denoiser  # noqa: E402

FLAGS = flags.FLAGS
CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2'

def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained restoration run (configs/ct_denoise.py).')
  flags.DEFINE_string('input', None, 'Folder of DICOM series and/or NIfTI volumes (CT, HU).')
  flags.DEFINE_string('output', None, 'Folder to write the denoised series and volumes to.')
  flags.DEFINE_integer('batch', 8, 'Slices per model call.')
  flags.DEFINE_bool('dihedral', False, 'Average the model over the 8 flips/quarter turns of each slice: 8× the '
                    'time, lower error (docs/restoration.md).')


def _write_dicom(denoiser, files, series, hu_out, folder, surrogates, number):
  """Writes the denoised slices of one series as fresh CT objects (`export.ct_dataset`).

  From each input slice only `deid.image_attributes` is taken (geometry, pixel encoding, rescale, kVp);
  identity, dates, UIDs and everything else are stand-ins or empty (`deid.identity`). `surrogates` is shared
  by all series of a run: series of one input study get one new Study UID, and frames of reference map one
  to one.
  """
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom.uid import generate_uid  # pylint: disable=g-import-not-at-top
  sop = str(pydicom.dcmread(files[series.files[0]], stop_before_pixels=True).get('SOPClassUID', ''))
  if sop != CT_IMAGE_STORAGE:  # enhanced objects keep rescale and geometry in functional groups
    raise scans.Skip('enhanced or legacy-converted CT object: denoise writes classic CT Image Storage only')
  os.makedirs(folder, exist_ok=True)
  series_uid = generate_uid()
  for k, (i, hu) in enumerate(zip(series.files, hu_out)):
    src = pydicom.dcmread(files[i], stop_before_pixels=True)
    kept = deid.image_attributes(src)
    slope, intercept = float(kept.get('RescaleSlope', 1.0)), float(kept.get('RescaleIntercept', 0.0))
    signed = kept.get('PixelRepresentation', 0) == 1
    bits = kept.get('BitsStored', 16)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    stored = np.clip(np.round((hu - intercept) / slope), lo, hi).astype(np.int16 if signed else np.uint16)
    # Without a Study / Frame-of-Reference UID the series is its own study / frame (keys stay in memory).
    study = str(src.get('StudyInstanceUID', '') or f'series {number}')
    frame = str(src.get('FrameOfReferenceUID', '') or f'series {number}')
    ds = export.ct_dataset(stored, {
        **kept, **deid.identity(surrogates.patient_id(series.patient_key)),
        'StudyInstanceUID': surrogates.uid('study', study), 'SeriesInstanceUID': series_uid,
        'FrameOfReferenceUID': surrogates.uid('frame', frame), 'SeriesNumber': number + 1,
        'InstanceNumber': k + 1, 'Manufacturer': 'aigc_jax',
        'ImageType': ['DERIVED', 'SECONDARY', 'AXIAL'],  # scouts never get here (scans skips them)
        'SeriesDescription': f'DENOISED {denoiser.description}'[:64],
        'DerivationDescription': f'Denoised by aigc_jax {denoiser.description}'[:1024]})
    pydicom.dcmwrite(os.path.join(folder, f'IMG{k:04d}.dcm'), ds, enforce_file_format=True)


def _nifti_volume(path):
  """(image, HU [slices, rows, cols] in the radiological view, and the function that maps such a volume back
  to the file's own voxel order)."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  img = nib.load(path)
  if len(img.shape) != 3:
    raise scans.Skip(f'{len(img.shape)}-D NIfTI; only 3-D volumes are denoised')
  own = nib.orientations.io_orientation(img.affine)
  ras = nib.orientations.axcodes2ornt('RAS')
  data = nib.orientations.apply_orientation(np.asarray(img.get_fdata(), np.float32),
                                            nib.orientations.ornt_transform(own, ras))
  view = np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))  # as scans.load shows NIfTI

  def back(vol):
    canonical = np.ascontiguousarray(vol.transpose(2, 1, 0)[::-1, ::-1, :])
    return nib.orientations.apply_orientation(canonical, nib.orientations.ornt_transform(ras, own))

  return img, view, back


def _write_nifti(denoiser, img, data, path):
  """A fresh header (`export.nifti_image`): the input's qform/sform and codes, units and data type only."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  out = export.nifti_image(data, img.affine, descrip=f'DENOISED aigc_jax {denoiser.description}',
                           dtype=img.get_data_dtype(), like=img.header)
  nib.save(out, path)


def denoise(workdir: str, input_dir: str, output: str, batch: int = 8, dihedral: bool = False) -> dict:
  """Denoises every CT series / NIfTI volume under `input_dir` into `output`; returns the report."""
  reporting.quiet_library_logs()
  denoiser = Denoiser(workdir)
  files = scans.list_files(input_dir)
  found, skipped, problems = scans.find_series(files, input_dir, 'CT', '2d')
  if not found:
    raise ValueError(f'--input={input_dir!r}: no CT series or NIfTI volume found ({len(files)} files, '
                     f'{len(skipped)} skipped); see the reasons with python -m aigc_jax.prepare.')
  os.makedirs(output, exist_ok=True)
  done = []
  surrogates = deid.Surrogates()  # one table for the run: series of one study stay one study
  def leave_out(n, s, reason):
    shutil.rmtree(os.path.join(output, f'series_{n}'), ignore_errors=True)
    if os.path.exists(os.path.join(output, f'volume_{n}.nii.gz')):
      os.remove(os.path.join(output, f'volume_{n}.nii.gz'))
    problems.append(f'{s.kind} {n} (files {s.files}): {reason}')
    for i in s.files:  # every input file is written or has a reason, as in prepare's report
      skipped.setdefault(i, f'its series was left out: {reason}')

  for n, s in enumerate(found):
    try:  # reading: what prepare would skip, denoise skips
      if s.kind == 'dicom':
        if s.frames:  # what load reads, the writer below could not put back: one output file per frame
          raise scans.Skip('multi-frame (enhanced) DICOM: denoise writes single-frame series only')
        hu = scans.load(s, files, skipped, '3d')  # every slice or none: the output series stays whole
      else:
        scans.load(s, files, skipped, '3d')  # as prepare reads it: size-checked, damaged data skipped
        img, hu, back = _nifti_volume(files[s.files[0]])
    except scans.Skip as e:
      leave_out(n, s, str(e))
      continue
    out = denoiser(hu, batch, dihedral)  # outside the guards: a model or device error is ours, and stops the run
    try:
      if s.kind == 'dicom':
        _write_dicom(denoiser, files, s, out, os.path.join(output, f'series_{n}'), surrogates, n)
      else:
        _write_nifti(denoiser, img, back(out), os.path.join(output, f'volume_{n}.nii.gz'))
    except Exception as e:  # pylint: disable=broad-except
      # The writer re-reads each source header (pydicom parses lazily, so a damaged element the reader never
      # touched can raise there): one bad series must not end the run, nor leave half a series behind.
      leave_out(n, s, str(e) if isinstance(e, scans.Skip) else f'could not be written ({type(e).__name__})')
      continue
    spacing = s.spacing[0]
    notes = []
    if spacing and not 0.5 <= spacing / denoiser.pixel_mm <= 2.0:
      notes.append(f'pixel spacing {spacing:.2f} mm vs {denoiser.pixel_mm:.2f} mm in training: the noise texture '
                   'differs, check the result')
    index, warning = denoiser.noise_note(hu)
    notes += [warning] if warning else []
    done.append({'kind': s.kind, 'input_files': s.files, 'slices': int(len(hu)), 'noise_index_hu': index,
                 'mean_abs_change_hu': float(np.mean(np.abs(out - hu))), **({'note': '; '.join(notes)} if notes else {})})
  trained = denoiser.trained_noise
  report = {'workdir': os.path.abspath(workdir), 'step': denoiser.step, 'model': denoiser.description,
            'dihedral_average': dihedral,
            'trained_noise_index_hu': list(trained) if trained else None,
            'written': done, 'problems': problems, 'skipped_files': {str(i): r for i, r in sorted(skipped.items())}}
  with open(os.path.join(output, 'denoise_report.json'), 'w') as f:
    json.dump(report, f, indent=1)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  r = denoise(FLAGS.workdir, FLAGS.input, FLAGS.output, FLAGS.batch, FLAGS.dihedral)
  trained = r['trained_noise_index_hu']
  print('trained for noise index ' + (f'{trained[0]:.1f}–{trained[1]:.1f} HU (aigc_jax/imaging/denoisers.py)'
                                      if trained else 'unknown (a prepared dataset\'s own doses)'))
  for n, d in enumerate(r['written']):
    index = 'n/a' if d['noise_index_hu'] is None else f'{d["noise_index_hu"]:.1f} HU'
    print(f'{d["kind"]} {n}: {d["slices"]} slices, noise index {index}, mean |change| '
          f'{d["mean_abs_change_hu"]:.1f} HU' + (f' (WARNING: {d["note"]})' if 'note' in d else ''))
  print(f'{len(r["written"])} written to {FLAGS.output}; {len(r["skipped_files"])} files skipped, '
        f'{len(r["problems"])} problems (see denoise_report.json)')
  if not r['written']:
    sys.exit(1)  # nothing came out: a script calling this must not take it for success


if __name__ == '__main__':
  define_flags()
  for name in ('workdir', 'input', 'output'):
    flags.mark_flag_as_required(name)
  app.run(runtime.exits_cleanly(main))

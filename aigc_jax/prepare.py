r"""Writes a training dataset (TFDS, ArrayRecord) from users' scans or from the built-in phantom.

Users' DICOM series and NIfTI volumes:

  python -m aigc_jax.prepare --input=/path/to/scans --output=/path/to/tfds --name=my_ct \
      [--modality=CT] [--layout=2d|3d] [--size=256] [--spacing=0.8,0.8] [--val_fraction=0.1 --test_fraction=0.1]
      [--labels=labels.csv]     # "path,<label>,..." per file or folder: a classifier's labels (data/scan_labels.py)

Fixed splits of the built-in phantom (optionally with low-/full-dose pairs from the acquisition model):

  python -m aigc_jax.prepare --phantom --output=/path/to/tfds --name=phantom_ct64 --size=64 \
      --phantom_examples=train:2000,validation:256,test:256 [--pairs]

Train on the result with `--config.data.name=tfds:my_ct --config.data.data_dir=/path/to/tfds`.

De-identification: only pixels, spacing, modality and a salted hash of the patient (for the split and for
patient-level evaluation) are written. The salt is never written; pass your own `--salt` (kept secret) to get
the same splits on a rerun. Files that cannot be used are skipped with a reason in
`<output>/<name>/prepare_report.json`; files there are numbered in the order of `find INPUT -type f | sort`
(paths are written only with `--report_paths`, since folder names are often patient names or IDs).
Exit code 0 when examples were written, 1 when nothing was. The work is `aigc_jax.data.prepare`'s.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from aigc_jax.data import records
from aigc_jax.data.prepare import parse_counts, parse_spacing, prepare_phantom, prepare_scans
from aigc_jax.imaging import acquisition

FLAGS = flags.FLAGS
flags.DEFINE_string('input', None, 'Folder of DICOM files and/or NIfTI volumes (searched recursively).')
flags.DEFINE_string('output', None, 'TFDS data_dir to write into (the dataset goes to OUTPUT/NAME/1.0.0).')
flags.DEFINE_string('name', None, 'Dataset name (snake_case); train with --config.data.name=tfds:NAME.')
flags.DEFINE_string('modality', 'CT', 'DICOM Modality to keep (CT, MR, CR, DX, ...); NIfTI is taken as this.')
flags.DEFINE_enum('layout', '2d', ['2d', '3d'], 'One example per slice (2d) or per volume (3d).')
flags.DEFINE_integer('size', 256, 'Fit slices into size × size (aspect kept, padded); 0 keeps the native size.')
flags.DEFINE_string('spacing', '', 'Resample to this spacing in mm first: "row,col" or "row,col,slice".')
flags.DEFINE_float('val_fraction', 0.1, 'Share of patients in the validation split.')
flags.DEFINE_float('test_fraction', 0.1, 'Share of patients in the test split.')
flags.DEFINE_string('salt', '', 'Secret salt for the patient hash (random when empty: splits differ per run).')
flags.DEFINE_string('labels', '', 'CSV "path,<label>[,<label>...]": whole-number labels per file or folder under '
                    '--input (relative paths); unlabelled series are left out. Train with --config.data.labels.')
flags.DEFINE_bool('report_paths', False, 'Write input paths into the skip report (they may hold identifiers).')
flags.DEFINE_bool('phantom', False, 'Write splits of the built-in phantom instead of reading --input.')
flags.DEFINE_string('phantom_examples', 'train:2000,validation:256,test:256', 'split:count pairs (--phantom).')
flags.DEFINE_bool('pairs', False, 'With --phantom: add low-dose reconstructions (key low_dose) to each slice.')
flags.DEFINE_float('full_dose', acquisition.FULL_DOSE, 'Full dose in photons/mm² over the scan, any grid '
                   '(--pairs; the default gives ~15 HU noise in a 300 mm water cylinder).')
flags.DEFINE_float('low_dose_fraction', acquisition.LOW_DOSE_FRACTION, 'Low dose as a share of full dose (--pairs).')
flags.DEFINE_integer('seed', 0, 'Phantom seed of the first split.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for flag in ('output', 'name') + (() if FLAGS.phantom else ('input',)):
    if not getattr(FLAGS, flag):
      raise app.UsageError(f'--{flag} is required.')
  try:
    if FLAGS.phantom:
      summary = prepare_phantom(output=FLAGS.output, name=FLAGS.name, size=FLAGS.size or 64,
                                counts=parse_counts(FLAGS.phantom_examples), pairs=FLAGS.pairs,
                                full_dose=FLAGS.full_dose, low_dose_fraction=FLAGS.low_dose_fraction,
                                seed=FLAGS.seed)
      logging.info('Wrote %s to %s: %s', FLAGS.name, records.dataset_dir(FLAGS.output, FLAGS.name),
                   json.dumps(summary['counts']))
      return 0
    report = prepare_scans(
        input_dir=FLAGS.input, output=FLAGS.output, name=FLAGS.name, modality=FLAGS.modality,
        layout=FLAGS.layout, spacing=parse_spacing(FLAGS.spacing), size=FLAGS.size,
        val_fraction=FLAGS.val_fraction, test_fraction=FLAGS.test_fraction, salt=FLAGS.salt,
        report_paths=FLAGS.report_paths, labels=FLAGS.labels)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f'prepare: {e}', file=sys.stderr)
    return 1
  print(f'files seen: {report["files_seen"]}, used: {report["files_used"]}, skipped: {report["files_skipped"]}; '
        f'series left out: {report["series_skipped"]}')
  for reason, n in report['skip_reasons'].items():
    print(f'  skipped {n:5d} × {reason}')
  for split, c in report['counts'].items():
    print(f'  {split:10s} {c["patients"]:5d} patients {c["volumes"]:5d} volumes {c["examples"]:7d} examples')
  for label, by_split in report.get('labels', {}).items():
    print(f'  label {label}: ' + '; '.join(f'{k} {v}' for k, v in by_split.items() if v))
  where = os.path.join(FLAGS.output, FLAGS.name)
  if not report['written_splits']:
    print(f'Nothing written: no usable series. Reasons in {where}/prepare_report.json.')
    return 1
  if not FLAGS.salt:
    print('Splits used a random salt; pass --salt=<secret> to reproduce them on a rerun.')
  print(f'Wrote {records.dataset_dir(FLAGS.output, FLAGS.name)}; report in {where}/prepare_report.json')
  return 0


if __name__ == '__main__':
  app.run(main)

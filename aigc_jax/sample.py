r"""Samples from a trained run and writes them as PNG, DICOM or NIfTI.

  python -m aigc_jax.sample --workdir=runs/ct_local --num=64 --format=dicom [--out=DIR] [--seed=0]

Rebuilds the model from `<workdir>/config.json` (written by the trainer), loads the latest checkpoint's EMA
parameters, samples with the config's sampler (override with `--config.task.<key>=...` style flags below),
maps the [-1, 1] outputs back to HU through the config's window, and writes:
  png:   one grid image, `samples.png`
  dicom: one synthetic CT series, IMG0000.dcm … (see `aigc_jax/imaging/export.py` for how they are marked)
  nifti: one volume `samples.nii.gz`, a sample per slice
"""

import json
import os

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from aigc_jax.imaging import export  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax import experiment  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """Only for the command: importing this module (evaluate imports sample) must not define flags twice."""
  flags.DEFINE_string('workdir', None, 'A training workdir (holds config.json and checkpoints/).')
  flags.DEFINE_integer('num', 16, 'Number of images.')
  flags.DEFINE_enum('format', 'png', ['png', 'dicom', 'nifti'], 'Output format.')
  flags.DEFINE_string('out', '', 'Output folder (default: <workdir>/exports/step_<step>_<format>).')
  flags.DEFINE_integer('seed', 0, 'Sampling seed: the same seed gives the same images.')
  flags.DEFINE_integer('batch', 16, 'Images per compiled sampling call.')
  flags.DEFINE_integer('sample_steps', 0, 'Override config.task.sample_steps (DDIM steps); 0 keeps it.')
  flags.DEFINE_float('ddim_eta', -1.0, 'Override config.task.ddim_eta; negative keeps it.')
  flags.DEFINE_float('guidance', -1.0, 'Classifier-free guidance scale w for a conditional model; negative keeps '
                     'config.task.guidance.')
  flags.DEFINE_integer('label', -1, 'Class to sample for a conditional model; -1 cycles through the classes.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  overrides = {}
  if FLAGS.sample_steps:
    overrides['sample_steps'] = FLAGS.sample_steps
  if FLAGS.ddim_eta >= 0:
    overrides['ddim_eta'] = FLAGS.ddim_eta
  if FLAGS.guidance >= 0:
    overrides['guidance'] = FLAGS.guidance
  hu, step, config = experiment.generate(FLAGS.workdir, num=FLAGS.num, seed=FLAGS.seed, batch=FLAGS.batch,
                              overrides=overrides, label=FLAGS.label)
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'exports', f'step_{step}_{FLAGS.format}')
  os.makedirs(out, exist_ok=True)
  extra = {'seed': FLAGS.seed, **overrides, **({'label': FLAGS.label} if FLAGS.label >= 0 else {})}
  desc = export.provenance(FLAGS.workdir, step, config.to_json_best_effort(), extra)
  mm = pipeline.pixel_mm(config.data)
  if FLAGS.format == 'png':
    x = pipeline.window(hu, config.data.window_lo, config.data.window_hi)[..., None]
    reporting.save_png(os.path.join(out, 'samples.png'), reporting.image_grid(x))
  elif FLAGS.format == 'dicom':
    export.write_dicom_series(hu, out, pixel_mm=mm, description=desc)
  else:
    export.write_nifti(hu, os.path.join(out, 'samples.nii.gz'), pixel_mm=mm, description=desc)
  with open(os.path.join(out, 'provenance.json'), 'w') as f:
    json.dump({'workdir': os.path.abspath(FLAGS.workdir), 'step': step, 'num': FLAGS.num, 'seed': FLAGS.seed,
               'format': FLAGS.format, 'pixel_mm': mm, 'description': desc, 'synthetic': True}, f, indent=1)
  print(f'Wrote {FLAGS.num} synthetic images (step {step}) as {FLAGS.format} to {out}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))

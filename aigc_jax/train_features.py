r"""Trains the CT feature network of `aigc_jax.imaging.features` (FID/KID/precision-recall space) through the one
trainer (`configs/ct_features.py`, a classification run) and exports it with its hash.

  python -m aigc_jax.train_features --workdir=runs/ct_features --out=FILE.msgpack [--config.seed=1]

A rerun with the same workdir resumes (or, when the run has finished, only exports). The export holds the
run's final weights, and `FILE.msgpack.json` records the run, its held-out scores and the file's SHA-256;
pass the file to `aigc_jax.evaluate --features=FILE.msgpack`.
"""

import json
import os
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

FLAGS = flags.FLAGS
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'ct_features.py')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from aigc_jax import experiment  # pylint: disable=g-import-not-at-top
  from aigc_jax.core import reporting  # pylint: disable=g-import-not-at-top
  from aigc_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from aigc_jax.imaging import features  # pylint: disable=g-import-not-at-top
  reporting.quiet_library_logs()
  config = FLAGS.config
  if config.model.name != 'ct_feature_net':
    raise app.UsageError(f'--config.model.name={config.model.name!r}: the feature net is ct_feature_net.')
  experiment.train_and_evaluate(config, FLAGS.workdir)
  config, task, params, step = experiment.load_run(FLAGS.workdir)
  # Held-out scores of the exported weights, as the old record had them: the level's error (0…1 is chest to
  # pelvis) and the lesion kind's accuracy beside the share of the commonest kind.
  batch, source = pipeline.monitor_examples(config.data, 512)
  out = task.model.apply({'params': params}, batch['image'])
  kind = np.asarray(batch['lesion_kind'])
  info = {'workdir': os.path.abspath(FLAGS.workdir), 'step': step, 'seed': config.seed,
          'train_examples': config.data.num_train, 'held_out': source,
          'held_out_level_mae': float(np.mean(np.abs(np.asarray(out['level']) - batch['level']))),
          'held_out_kind_accuracy': float(np.mean(np.argmax(np.asarray(out['logits']), -1) == kind)),
          'held_out_majority_share': float(np.bincount(kind).max() / len(kind))}
  fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.model.items() if k != 'name'}
  print(json.dumps(features.export(params, fields, FLAGS.out, info)))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', CONFIG, 'The feature net\'s recipe (overrides: --config.<key>=…).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', 'runs/ct_features', 'The training run (resumed if it exists).')
  flags.DEFINE_string('out', None, 'Where to write the feature network (msgpack; a .json beside it). The shipped '
                      'one is aigc_jax/imaging/assets/ct_features.msgpack: overwriting it changes every FID.')
  flags.mark_flags_as_required(['out'])
  app.run(runtime.exits_cleanly(main))

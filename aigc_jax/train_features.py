r"""Trains the CT feature network of `aigc_jax.features` (FID/KID/precision-recall space) and writes it with
its hash: see that module for what it learns and why.

  python -m aigc_jax.train_features --out=aigc_jax/assets/ct_features.msgpack [--steps=1000] [--seed=0]
"""

import json

from aigc_jax import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from aigc_jax import features  # noqa: E402
from aigc_jax import metrics  # noqa: E402

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  metrics.quiet_library_logs()
  info = features.train(FLAGS.out, steps=FLAGS.steps, seed=FLAGS.seed)
  print(json.dumps(info))


if __name__ == '__main__':
  flags.DEFINE_string('out', features.DEFAULT_PATH, 'Where to write the feature network (msgpack; a .json beside it).')
  flags.DEFINE_integer('steps', 1000, 'Training steps (batch 64).')
  flags.DEFINE_integer('seed', 0, 'Initialisation and batch-order seed.')
  app.run(main)

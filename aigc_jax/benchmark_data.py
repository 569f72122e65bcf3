r"""Prints how many examples per second the input pipeline of a config delivers, without training.

  python -m aigc_jax.benchmark_data --config=configs/ct.py:runlocal [--batches=100] [--config.data.num_workers=2]

Compare it with the trainer's examples/s in the run log: the pipeline should deliver several times what a step
consumes, or training waits for data.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from aigc_jax.data import pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config (its data and batch_size are used).',
                                lock_config=True)
flags.DEFINE_integer('batches', 100, 'Batches to time after 5 of warm-up.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  if config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/ct.py:runlocal')
  rate = pipeline.throughput(config.data, batch_size=config.batch_size, num_batches=FLAGS.batches)
  d = config.data
  print(f'data {d.name} {d.image_size}x{d.image_size} pairs={d.pairs} workers={d.num_workers} '
        f'threads={d.num_threads}: {rate:,.0f} examples/s ({config.batch_size / rate * 1e3:.1f} ms per batch '
        f'of {config.batch_size})')
  print(json.dumps({'data_examples_per_s': round(rate, 1), 'batch': config.batch_size,
                    'img': d.image_size, 'source': d.name, 'num_workers': d.num_workers}))


if __name__ == '__main__':
  app.run(main)

r"""Command line: `python -m aigc_jax.main --config=configs/ct.py:runlocal --workdir=runs/ct`.

Flags are parsed here and nothing else happens here: `experiment.train_and_evaluate` does the work.
Any config field can be overridden with `--config.<key>=<value>`; an unknown key stops at once.
A problem the user must act on (no checkpoint restores, a save failed for lack of space, an unusable
workdir, a non-finite loss) ends with its one message and exit status 1, without a traceback.
"""

import json
import os
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A config file, optionally with a variant: configs/ct.py:runlocal.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard events and samples go; reruns resume here.')
flags.DEFINE_bool('distributed', False, 'Initialize jax.distributed, finding the coordinator and this process\'s '
                  'rank from the cluster (TPU VM slices, SLURM); see launch/.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for multi-process runs.')
flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-process run.')
flags.DEFINE_integer('process_id', None, 'This process\'s index in a multi-process run.')
flags.DEFINE_integer('heartbeat_timeout_s', 100, 'Multi-process runs: when a process dies (SIGKILL, a lost node), '
                     'the others stop after this many seconds without its heartbeat instead of waiting in a '
                     'collective forever (JAX\'s default, 100).')
flags.DEFINE_bool('compile_only', False, 'Lower and compile the train step for the configured mesh, print '
                  'per-device memory and FLOPs, and exit (nothing is trained or written).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id, heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_s)
  # Repo root on the path, so `configs/*.py` can import `configs.common` wherever the command runs.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  # after distributed init: they must not touch devices first
  from aigc_jax import experiment  # pylint: disable=g-import-not-at-top
  from aigc_jax.core import checkpoint_noise, reporting  # pylint: disable=g-import-not-at-top

  reporting.quiet_library_logs()
  checkpoint_noise.quiet_background_tracebacks()
  if FLAGS.compile_only:
    report = experiment.compile_report(FLAGS.config)
    if jax.process_index() == 0:
      for k, v in report.items():
        print(f'{k:>20s}  {v:,.2f}')
      print(json.dumps(report))
    return
  logging.info('Config:\n%s', FLAGS.config)
  experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)  # known failures: one message (runtime.exits_cleanly)


if __name__ == '__main__':
  # Keep the absl app run under the __main__ guard: grain's worker processes re-import this module.
  app.run(runtime.exits_cleanly(main))

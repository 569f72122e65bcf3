"""Saves checkpoint 1, then SIGKILLs itself in a chosen phase of the asynchronous save of checkpoint 2.

  python tests/checkpoint_kill_helper.py WORKDIR PHASE

Used by tests/test_checkpoint_faults.py (run in a subprocess: a SIGKILL cannot be caught). The hooks wrap
orbax 0.12.8's own functions; if a phase's hook never fires, the script exits with status 3 so that a changed
orbax fails the test instead of passing it vacuously. Checkpoint `s` holds `fault_state(s)`.
"""

import os
import signal
import sys

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from orbax.checkpoint._src.path import async_path
from orbax.checkpoint._src.path import atomicity
from orbax.checkpoint._src.path import deleter
from orbax.checkpoint._src.serialization import serialization

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aigc_jax.core import checkpoint  # noqa: E402

PHASES = ('tmp-folder-created', 'arrays-half-written', 'data-written-not-finalized',
          'marker-written-not-renamed', 'renamed-old-step-not-deleted', 'old-step-half-deleted')


def fault_state(step: int) -> dict[str, jax.Array]:
  """A small train-state stand-in whose values tell the step: random floats (zstd cannot shrink them, so a
  flipped byte breaks a compressed block) large enough to go to OCDBT data files, not inline."""
  rng = np.random.default_rng(step)
  return {'step': jnp.int32(step), 'w': jnp.asarray(rng.standard_normal((128, 256), np.float32)),
          'b': jnp.asarray(rng.standard_normal((4096,), np.float32))}


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _is_step(path) -> bool:
  return path.name.isdigit()


def install(phase: str) -> None:
  """Wraps the orbax function where `phase` ends so that the process dies there."""
  if phase == 'tmp-folder-created':
    orig_create = atomicity._create_tmp_directory

    async def create(*args, **kwargs):
      out = await orig_create(*args, **kwargs)
      _die()
      return out
    atomicity._create_tmp_directory = create
  elif phase == 'arrays-half-written':
    orig_write, count = serialization.async_serialize_from_host, [0]

    async def write(*args, **kwargs):
      out = await orig_write(*args, **kwargs)
      count[0] += 1
      if count[0] == 2:  # of the state's three arrays
        _die()
      return out
    serialization.async_serialize_from_host = write
  elif phase == 'data-written-not-finalized':
    async def finalize(self):
      del self
      _die()
    atomicity.AtomicRenameTemporaryPath.finalize = finalize
  elif phase in ('marker-written-not-renamed', 'renamed-old-step-not-deleted'):
    orig_rename = async_path.rename

    async def rename(src, dst):
      if _is_step(dst) and phase == 'marker-written-not-renamed':
        _die()
      out = await orig_rename(src, dst)
      if _is_step(dst):
        _die()
      return out
    async_path.rename = rename
  elif phase == 'old-step-half-deleted':
    def delete(self, path, **kwargs):
      del self, kwargs
      # What a kill part-way through orbax's file-by-file deletion leaves: some files gone, the folder there.
      os.remove(os.path.join(path, checkpoint.COMMIT_MARKER))
      _die()
    deleter.PathDeleter.delete = delete
  else:
    raise ValueError(f'unknown phase {phase!r}; one of {PHASES}')


def main(workdir: str, phase: str) -> None:
  config = ml_collections.ConfigDict({'max_to_keep': 1, 'async_save': True})
  mngr = checkpoint.make_manager(workdir, config)
  it = iter(grain.MapDataset.range(1000).to_iter_dataset())
  next(it)
  checkpoint.save(mngr, 1, fault_state(1), it)
  mngr.wait_until_finished()
  install(phase)
  next(it)
  checkpoint.save(mngr, 2, fault_state(2), it)
  mngr.wait_until_finished()
  sys.exit(3)  # the hook never fired


if __name__ == '__main__':
  main(*sys.argv[1:])

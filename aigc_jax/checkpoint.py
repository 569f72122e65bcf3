"""Checkpoints: the train state and the data iterator's position, saved together in one orbax step.

Resume order, tried top to bottom by `restore_or_init`:
  1. the latest checkpoint in `<workdir>/checkpoints` — the whole state and the data iterator, so the run
     continues exactly where it stopped (same parameters, optimizer moments, RNG and next batch);
  2. `config.init_from` (a workdir or its checkpoints folder) — params and EMA params only, with a fresh
     optimizer, step 0 and the data from the start: fine-tuning;
  3. from scratch: `init_fn()`.
Restores go straight onto the current mesh (target ShapeDtypeStructs carry shardings), so a checkpoint
written on one device layout loads on another.
"""

import os
from typing import Any, Callable

from absl import logging
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

ITEMS = ('state', 'data')


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.max_to_keep, enable_async_checkpointing=config.async_save, create=True,
      cleanup_tmp_directories=True)  # a hard kill mid-save leaves a tmp folder; the next run removes it
  # orbax's async writers need an absolute path; users type relative ones (runs/ct).
  return ocp.CheckpointManager(epath.Path(os.path.abspath(workdir)) / 'checkpoints', item_names=ITEMS,
                               options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter: Any) -> None:
  """Starts an (asynchronous) save of `state` and the iterator position as checkpoint `step`."""
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)), force=True)


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _checkpoints_dir(path: str) -> epath.Path:
  p = epath.Path(os.path.abspath(path))
  return p / 'checkpoints' if (p / 'checkpoints').is_dir() else p


def restore_params(path: str, target: dict[str, Any], *, flag: str = 'config.init_from') -> dict[str, Any]:
  """Reads only the entries of `target` (e.g. {'params', 'ema_params'}) from the latest checkpoint at `path`.

  The result also holds 'step', the checkpoint's step. `flag` names the setting that gave `path`, for errors.
  """
  directory = _checkpoints_dir(path)
  if not directory.is_dir():
    raise FileNotFoundError(f'{flag}={path!r}: no such folder. Give a workdir of an earlier run '
                            'or its checkpoints/ folder.')
  with ocp.CheckpointManager(directory, item_names=ITEMS,
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f'{flag}={path!r}: no checkpoint in {directory}.')
    logging.info('Reading %s from %s step %d.', sorted(target), directory, step)
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                       partial_restore=True)))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f'{flag}={path!r}: its parameters do not fit this config\'s model '
                       f'(different architecture?): {e}') from None
  return {**restored['state'], 'step': step}


def restore_or_init(mngr: ocp.CheckpointManager, *, abstract_state: Any, data_iter: Any,
                    init_fn: Callable[[], Any], init_from: str) -> tuple[Any, str]:
  """The train state by the resume order above; `data_iter` is moved to the restored position in place.

  Returns:
    (state, how) where how is 'resumed', 'init_from' or 'scratch', for the log.
  """
  step = mngr.latest_step()
  if step is not None:
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iter)))
    except ValueError as e:
      raise ValueError(
          f'The checkpoint at {mngr.directory}/{step} does not fit this config (model, optimizer or data '
          f'changed?): {str(e)[:400]}\nResume with the config that wrote it, or start a new --workdir with '
          f'--config.init_from={os.path.dirname(os.fspath(mngr.directory))} to start from its parameters.') from None
    return restored['state'], 'resumed'
  state = init_fn()
  if init_from:
    loaded = restore_params(os.fspath(init_from), {
        'params': abstract_state.params, 'ema_params': abstract_state.ema_params})
    return state.replace(params=loaded['params'], ema_params=loaded['ema_params']), 'init_from'
  return state, 'scratch'

"""Checkpoints: the train state and the data iterator's position, saved together in one orbax step.

Resume order, tried top to bottom by `restore_or_init`:
  1. the newest checkpoint in `<workdir>/checkpoints` that restores — the whole state and the data iterator,
     so the run continues exactly where it stopped (same parameters, optimizer moments, RNG and next batch);
  2. `config.init_from` (a workdir or its checkpoints folder) — params and EMA params only, with a fresh
     optimizer, step 0 and the data from the start: fine-tuning (a task's `new_heads`, e.g. a classifier's
     head on a pretrained language model, start fresh where the checkpoint has none of that shape);
  3. from scratch: `init_fn()`.
Restores go straight onto the current mesh (target ShapeDtypeStructs carry shardings), so a checkpoint
written on one device layout loads on another.

A checkpoint is trusted only when complete. Orbax writes a step into `<step>.orbax-checkpoint-tmp`, writes
`commit_success.txt` into it and renames it to `<step>` last (on GCS it writes the marker last instead), so a
save cut short by a kill or an error never carries a step's name; `make_manager` removes such leftovers. A
step folder that lacks a marker anyway (a half-copied folder, a non-atomic filesystem), misses files, holds
data that fails its checksum or is missing, or an iterator state that does not parse, is *broken*: `newest_restorable` names it and why,
and goes down the kept steps to the newest one that restores. The trainer moves each broken step aside to
`<step>.broken-<reason>` (renamed, never deleted; orbax then no longer lists it) once an older one restored;
the read-only commands (`init_from`, sample, evaluate, denoise) only skip it. A checkpoint written for
another model or optimizer is not broken: that stops with `CheckpointMismatch` and moves nothing.
"""

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from absl import logging
import grain
import jax
from jax.experimental import multihost_utils
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from aigc_jax.core import checkpoint_noise
from aigc_jax.core.checkpoint_noise import first_line as _first_line

ITEMS = ('state', 'data')
COMMIT_MARKER = 'commit_success.txt'  # orbax's marker of a finished save, in the step and in each item
_TMP = re.compile(r'^(\d+)\.orbax-checkpoint-tmp')


class CheckpointError(Exception):
  """A checkpoint or workdir problem whose message says what to do; the command prints it without a traceback."""


class CheckpointMismatch(CheckpointError, ValueError):
  """The checkpoint was written for another model, optimizer or data pipeline (it is not broken)."""


class MissingCheckpoint(CheckpointError, FileNotFoundError):
  """A folder given to read parameters from holds no checkpoint."""


class NoUsableCheckpoint(CheckpointError, RuntimeError):
  """Every kept checkpoint is broken; the message names each and why."""


class SaveFailed(CheckpointError, OSError):
  """A checkpoint could not be written (full disk, no permission, ...); the earlier ones are intact."""


class UnusableWorkdir(CheckpointError, OSError):
  """The workdir cannot be created or written to."""


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.max_to_keep, enable_async_checkpointing=config.async_save, create=True,
      cleanup_tmp_directories=True)  # a hard kill mid-save leaves a tmp folder; the next run removes it
  # orbax's async writers need an absolute path; users type relative ones (runs/ct).
  return ocp.CheckpointManager(epath.Path(os.path.abspath(workdir)) / 'checkpoints', item_names=ITEMS,
                               options=options)


def check_workdir(workdir: str) -> None:
  """Creates `workdir` if needed and writes a file there (and in its checkpoints/), before anything compiles.

  A typo'd path, a read-only mount or a missing permission then stops in a second, naming the folder, instead
  of at the first checkpoint after the compile and the first steps.
  """
  path = os.path.abspath(workdir)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UnusableWorkdir(f'workdir {workdir!r}: cannot create {path} ({e.strerror or e}). Give a --workdir '
                          'in a folder you can write to.') from None
  # Several processes share one workdir: each probes with its own file name.
  probe_name = f'.write_probe.{socket.gethostname()}.{os.getpid()}'
  for folder in [path] + [f for f in [os.path.join(path, 'checkpoints')] if os.path.isdir(f)]:
    probe = os.path.join(folder, probe_name)
    try:
      with open(probe, 'w') as f:
        f.write('probe')
      os.remove(probe)
    except OSError as e:
      fix = ('Free space there' if e.errno in (errno.ENOSPC, errno.EDQUOT)
             else 'Make it writable (permissions, a read-only mount)')
      raise UnusableWorkdir(f'workdir {workdir!r}: cannot write in {folder} ({e.strerror or e}). {fix} or give '
                            'another --workdir.') from None


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter: Any) -> None:
  """Starts an (asynchronous) save of `state` and the iterator position as checkpoint `step`.

  Raises:
    SaveFailed: this save, or the previous asynchronous one (its error surfaces here), failed.
  """
  _saving(mngr, state, None, mngr.wait_until_finished)
  _saving(mngr, state, step, lambda: mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)), force=True))


def close(mngr: ocp.CheckpointManager, *, failing: bool = False) -> None:
  """Waits for the last save and closes `mngr`.

  Raises SaveFailed when that save failed, unless the run is already `failing` with another error: then the
  save's error is one log line and the first error is the one the user sees.
  """
  try:
    _saving(mngr, None, None, mngr.wait_until_finished)
  except SaveFailed as e:
    if not failing:
      _close_quietly(mngr)
      raise
    logging.error('%s', e)
  _close_quietly(mngr)


@contextlib.contextmanager
def closing_on_error(mngr: ocp.CheckpointManager) -> Iterator[ocp.CheckpointManager]:
  """Closes `mngr` when the body raises, so that no orbax thread or event loop outlives the error (left open,
  they print tracebacks at interpreter exit)."""
  try:
    yield mngr
  except BaseException:
    close(mngr, failing=True)
    raise


def _close_quietly(mngr: ocp.CheckpointManager) -> None:
  try:
    mngr.close()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('closing the checkpoint manager: %s', _first_line(e))


def _saving(mngr: ocp.CheckpointManager, state: Any, step: int | None, call: Callable[[], Any]) -> None:
  """`call()`, with any error it raises turned into SaveFailed (`step` None: the step being written)."""
  try:
    call()
    return
  except Exception as e:  # pylint: disable=broad-except
    error = _save_failed(mngr, e, state, step)
  checkpoint_noise.collect_abandoned_work()
  raise error


def _save_failed(mngr: ocp.CheckpointManager, error: BaseException, state: Any, step: int | None) -> SaveFailed:
  """The message for a failed save: which step, which folder, why, what is intact and what to do."""
  directory = os.fspath(mngr.directory)
  unfinished = sorted(int(m.group(1)) for n in _listdir(directory) if (m := _TMP.match(n)))
  if step is None and unfinished:
    step = unfinished[-1]
  # The complete steps on disk (orbax's own list may already have dropped the one it was about to delete).
  intact = sorted(int(n) for n in _listdir(directory) if n.isdigit()
                  and os.path.exists(os.path.join(directory, n, COMMIT_MARKER)))
  text = ' '.join(map(str, _chain(error)))
  codes = {getattr(e, 'errno', None) for e in _chain(error)}
  what = f'Checkpoint {step}' if step is not None else 'A checkpoint'
  if errno.ENOSPC in codes or errno.EDQUOT in codes or 'No space left' in text or "os_error_code='28'" in text:
    # Orbax deletes the oldest kept step only after the new one is complete: one checkpoint's worth is needed.
    need = _dir_bytes(os.path.join(directory, str(intact[-1]))) if intact else _tree_bytes(state)
    free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
    why = (f'no space left on device ({_mb(free)} free there; one checkpoint of this run takes about '
           f'{_mb(need)}). Free at least {_mb(need)} there')
  elif codes & {errno.EACCES, errno.EPERM, errno.EROFS} or 'Permission denied' in text or 'Read-only' in text:
    why = 'permission denied or a read-only filesystem. Make the folder writable'
  else:
    why = f'{_first_line(error)}. Fix the cause'
  resume = (f'it resumes from checkpoint {intact[-1]} (kept intact: {", ".join(map(str, intact))})' if intact
            else 'no earlier checkpoint exists, so it starts from scratch')
  return SaveFailed(f'{what} could not be written to {directory}: {why}, then rerun the same command: {resume}.')


class Broken(NamedTuple):
  """A kept step that does not restore: `reason` is a short tag (also in the moved folder's name)."""
  step: int
  reason: str
  detail: str


def newest_restorable(directory: epath.Path, steps: Sequence[int], restore: Callable[[int], Any], *,
                      target: Any, items: Sequence[str] = ITEMS, move_aside: bool = False,
                      partial: bool = False, context: str = '') -> tuple[int, Any, list[Broken]]:
  """The newest of `steps` (in `directory`) that restores: (step, restore(step), the broken steps above it).

  Each broken step is one warning line. With `move_aside` (the trainer, in its own workdir) they are renamed
  to `<step>.broken-<reason>` once an older step restored; read-only users leave them where they are.
  An error from `restore` marks a step broken unless its saved tree does not fit `target` (the tree, or with
  `partial` the part of it, that `restore` reads): that raises CheckpointMismatch. `items` must be in each
  step ('data' too for the trainer); `context` prefixes messages, e.g. "--workdir='runs/ct'".

  Raises:
    NoUsableCheckpoint: none of `steps` restores (nothing is moved then: the user decides).
    CheckpointMismatch: the newest readable step was written for another config.
  """
  broken = []
  prefix = f'{context}: ' if context else ''
  for step in sorted(steps, reverse=True):
    problem = _incomplete(directory / str(step), items)
    if problem is None:
      try:
        restored = restore(step)
      except MemoryError:
        raise
      except CheckpointMismatch as e:
        raise CheckpointMismatch(f'{prefix}{e}') from None
      except Exception as e:  # pylint: disable=broad-except
        problem = _diagnose(directory / str(step), e, target, partial=partial, prefix=prefix)
      else:
        if move_aside and broken:
          _move_aside(directory, broken)
        return step, restored, broken
      checkpoint_noise.collect_abandoned_work()
    broken.append(Broken(step, *problem))
    if jax.process_index() == 0:
      logging.warning('%scheckpoint %d in %s is broken (%s): %s', prefix, step, directory, *problem)
  raise NoUsableCheckpoint(
      f'{prefix}no checkpoint in {directory} restores:\n'
      + ''.join(f'  step {b.step}: {b.reason}: {b.detail}\n' for b in broken)
      + f'Nothing was moved or deleted. Copy a good checkpoint folder in as <step>/, or move these aside '
        f'(mv {directory}/{broken[0].step} {directory}/{broken[0].step}.broken, ...) to start this workdir '
        'from scratch, or give a new --workdir.')


def _incomplete(step_dir: epath.Path, items: Sequence[str]) -> tuple[str, str] | None:
  """(reason, detail) when a step folder lacks what a finished save leaves, before reading any array."""
  if not (step_dir / COMMIT_MARKER).exists():
    return 'no-commit-marker', f'{COMMIT_MARKER} is missing, so its save never finished'
  for item in items:
    if not (step_dir / item).is_dir():
      return 'missing-files', f'its {item}/ folder is missing'
    if not (step_dir / item / COMMIT_MARKER).exists():
      return 'no-commit-marker', f'{item}/{COMMIT_MARKER} is missing, so its save never finished'
  if 'state' in items and not (step_dir / 'state' / '_METADATA').exists():
    return 'missing-files', 'state/_METADATA is missing'
  if 'data' in items:
    count = jax.process_count()
    names = [f'process_{i}-of-{count}.json' for i in range(count)]  # grain's names; every process checks all
    saved = sorted(p.name for p in (step_dir / 'data').iterdir())
    for name in names:
      if name not in saved:
        others = [n for n in saved if n.startswith('process_') and n.endswith('.json')]
        if others:  # written by another number of processes: a topology change, not damage
          raise CheckpointMismatch(
              f'checkpoint {step_dir} holds data-iterator positions {others}, not {name}: it was saved by '
              f'another number of processes. Resume with that number of processes.')
        return 'missing-files', f'data/{name} is missing'
      try:
        json.loads((step_dir / 'data' / name).read_bytes().decode())
      except (ValueError, UnicodeDecodeError) as e:
        return 'bad-iterator-state', f'data/{name} does not parse ({_first_line(e)})'
  return None


def _diagnose(step_dir: epath.Path, error: Exception, target: Any, *, partial: bool,
              prefix: str) -> tuple[str, str]:
  """(reason, detail) for a step whose restore raised `error`; raises CheckpointMismatch when the saved tree
  does not fit `target` (another model or optimizer: not damage)."""
  try:
    saved = ocp.tree.to_flat_dict(ocp.StandardCheckpointHandler().metadata(step_dir / 'state'))
  except Exception as e:  # pylint: disable=broad-except
    return 'bad-metadata', f'state/_METADATA does not read ({_first_line(e)})'
  mismatch = _tree_mismatch(saved, ocp.tree.to_flat_dict(target), partial=partial)
  if mismatch and partial:
    raise CheckpointMismatch(f'{prefix}the parameters at {step_dir} do not fit this config\'s model '
                             f'(different architecture?): {mismatch}.')
  if mismatch:
    raise CheckpointMismatch(
        f'{prefix}the checkpoint at {step_dir} does not fit this config (model, optimizer or data changed?): '
        f'{mismatch}. Resume with the config that wrote it, or start a new --workdir with '
        f'--config.init_from={step_dir.parent.parent} to start from its parameters.')
  if jax.process_count() > 1:
    # Each process read its own shards: falling back alone would leave the processes on different steps.
    raise NoUsableCheckpoint(
        f'{prefix}checkpoint {step_dir} does not restore on process {jax.process_index()}: '
        f'{_first_line(error)}. Move it aside (mv {step_dir} {step_dir}.broken) and rerun.')
  text = ' '.join(map(str, _chain(error)))
  # A data file deleted or cut short reads as a truncated compressed stream: the same damage as a flipped byte.
  if re.search(r'corrupt|checksum|DATA_LOSS|decompress|truncated', text, re.IGNORECASE):
    reason = 'corrupt-data'
  elif (any(isinstance(e, FileNotFoundError) for e in _chain(error))
        or re.search(r'NOT_FOUND|No such file|does not exist', text)):
    reason = 'missing-files'
  else:
    # No sign of damage (out of memory, a sharding error, a passing network-filesystem error): moving a good
    # checkpoint aside would be wrong, so the error stays the user's to see, traceback and all.
    raise error
  return reason, _first_line(_chain(error)[-1])  # the root cause: orbax wraps tensorstore's precise error


def _tree_mismatch(saved: dict[tuple, Any], want: dict[tuple, Any], *, partial: bool) -> str:
  """'' when every entry of `want` is in `saved` with the same shape (and nothing more, unless `partial`);
  otherwise the first few differences."""
  name = lambda k: '.'.join(map(str, k))
  diffs = [f'{name(k)} is not in it' for k in want if k not in saved]
  if not partial:
    diffs += [f'it has {name(k)}, this config does not' for k in saved if k not in want]
  for k in want:
    if k in saved:
      a, b = saved[k], want[k]
      shape_a, shape_b = tuple(getattr(a, 'shape', ()) or ()), tuple(getattr(b, 'shape', ()) or ())
      if shape_a != shape_b:
        diffs.append(f'{name(k)} has shape {shape_a}, this config {shape_b}')
  return '; '.join(diffs[:3]) + (f' (and {len(diffs) - 3} more)' if len(diffs) > 3 else '')


def _move_aside(directory: epath.Path, broken: Sequence[Broken]) -> None:
  """Renames each broken step (process 0) so that orbax no longer lists it; nothing is deleted."""
  if jax.process_index() == 0:
    stamp = datetime.datetime.now().strftime('%Y%m%dT%H%M%S')
    for b in broken:
      source = directory / str(b.step)
      dest = directory / f'{b.step}.broken-{b.reason}'
      if dest.exists():  # the same step broke before: keep both
        dest = directory / f'{b.step}.broken-{b.reason}-{stamp}'
      source.rename(dest)
      logging.warning('moved checkpoint %d aside to %s', b.step, dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('aigc_jax checkpoints moved aside')


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _checkpoints_dir(path: str) -> epath.Path:
  p = epath.Path(os.path.abspath(path))
  return p / 'checkpoints' if (p / 'checkpoints').is_dir() else p


def restore_params(path: str, target: dict[str, Any], *, flag: str = 'config.init_from', step: int = 0
                   ) -> dict[str, Any]:
  """Reads only the entries of `target` (e.g. {'params', 'ema_params'}) from the newest checkpoint at `path`
  that restores (broken newer ones are named in the log and left in place: this only reads), or from
  checkpoint `step` when it is nonzero (refused, naming the steps there, when it is not one of them).

  The result also holds 'step', the checkpoint's step. `flag` names the setting that gave `path`, for errors.
  """
  directory = _checkpoints_dir(path)
  if not directory.is_dir():
    raise MissingCheckpoint(f'{flag}={path!r}: no such folder. Give a workdir of an earlier run '
                            'or its checkpoints/ folder.')
  context = f'{flag}={path!r}'
  with ocp.CheckpointManager(directory, item_names=ITEMS,
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    steps = mngr.all_steps()
    if not steps:
      raise MissingCheckpoint(f'{flag}={path!r}: no checkpoint in {directory}.')
    if step:
      if step not in steps:
        raise MissingCheckpoint(f'{flag}={path!r}: no checkpoint of step {step} in {directory} (it has '
                                f'{sorted(steps)}).')
      steps = [step]

    def restore(at):
      logging.info('Reading %s from %s step %d.', sorted(target), directory, at)
      args = ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                    partial_restore=True)
      return mngr.restore(at, args=ocp.args.Composite(state=args))['state']

    step, restored, broken = newest_restorable(directory, steps, restore, target=target, items=('state',),
                                               partial=True, context=context)
  if broken:
    logging.warning('%s: using checkpoint %d, the newest that restores (skipped %s).', context, step,
                    ', '.join(str(b.step) for b in broken))
  return {**restored, 'step': step}


def restore_or_init(mngr: ocp.CheckpointManager, *, abstract_state: Any, data_iter: Any,
                    init_fn: Callable[[], Any], init_from: str, new_heads: Sequence[str] = ()
                    ) -> tuple[Any, str]:
  """The train state by the resume order above; `data_iter` is moved to the restored position in place.

  Broken newer checkpoints are moved aside first (see the module docstring), with one log line each and
  one saying how many steps will be redone.

  Returns:
    (state, how) where how is 'resumed', 'init_from' or 'scratch', for the log.
  """
  steps = mngr.all_steps()
  if steps:
    def restore(step):
      restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
      try:
        mngr.restore(step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(data_iter)))
      except Exception as e:  # pylint: disable=broad-except
        # It parsed (checked before): grain rejects a position of another data pipeline.
        raise CheckpointMismatch(f'the data-iterator position in {mngr.directory}/{step} does not fit this '
                                 f'config\'s data pipeline: {_first_line(e)}') from None
      return restored['state']

    step, state, broken = newest_restorable(epath.Path(mngr.directory), steps, restore, target=abstract_state,
                                            move_aside=True)
    if broken:
      mngr.reload()  # orbax must forget the moved steps (its cleanup would look for them)
      if jax.process_index() == 0:
        logging.warning('resuming from step %d; %d steps will be redone.', step, broken[0].step - step)
    return state, 'resumed'
  state = init_fn()
  if init_from:
    return _init_from(os.fspath(init_from), state, abstract_state, new_heads), 'init_from'
  return state, 'scratch'


def _init_from(path: str, state: Any, abstract_state: Any, new_heads: Sequence[str]) -> Any:
  """`state` with the params and EMA params of the checkpoint at `path`. Top-level params named in
  `new_heads` (a classifier's head on a pretrained encoder) keep their fresh values when the checkpoint
  lacks them or has them in another shape; every other parameter must be in it, as it is here."""
  heads = [k for k in new_heads if k in abstract_state.params]
  drop = lambda tree: {k: v for k, v in tree.items() if k not in heads}
  target = {'params': abstract_state.params, 'ema_params': abstract_state.ema_params}
  try:
    loaded = restore_params(path, target)
  except CheckpointMismatch:
    if not heads:
      raise
    loaded = restore_params(path, {k: drop(v) for k, v in target.items()})
  # A partial restore hands back the target's ShapeDtypeStruct where the checkpoint has no such entry.
  missing = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path(
      {k: loaded[k] for k in target}) if isinstance(x, jax.ShapeDtypeStruct)]
  unexcused = [m for m in missing if not any(m.startswith(f"['{t}']['{h}']") for t in target for h in heads)]
  if unexcused:
    raise CheckpointMismatch(f'config.init_from={path!r}: the parameters there do not fit this config\'s model: '
                             f'{", ".join(unexcused[:3])} not in it{" (and more)" if len(unexcused) > 3 else ""}.')
  fresh = {k: v for k, v in (('params', state.params), ('ema_params', state.ema_params))}
  merged = {t: jax.tree.map(lambda new, old: new if isinstance(old, jax.ShapeDtypeStruct) else old,
                            fresh[t], {**fresh[t], **loaded[t]}) if heads else loaded[t] for t in target}
  if heads:
    logging.info('config.init_from=%s: parameters from step %d; %s start fresh.', path, loaded['step'],
                 ', '.join(heads))
  return state.replace(params=merged['params'], ema_params=merged['ema_params'])


def _chain(error: BaseException) -> list[BaseException]:
  out, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    out.append(error)
    error = error.__cause__ or error.__context__
  return out


def _listdir(directory: str) -> list[str]:
  return os.listdir(directory) if os.path.isdir(directory) else []


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _tree_bytes(tree: Any) -> int:
  return sum(int(getattr(x, 'nbytes', 0)) for x in jax.tree.leaves(tree)) if tree is not None else 0


def _mb(n: int) -> str:
  return f'{n / 2 ** 20:.1f} MB'

"""Broken checkpoints, kills mid-save, full disks and unusable workdirs, on a small stand-in state (no model).

The trainer-level versions of the same faults (with the tiny model, exact resume) are in test_fault_tolerance.py.
"""

import errno
import logging
import os
import shutil
import subprocess
import sys
import types

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aigc_jax.core import checkpoint
from aigc_jax.core import checkpoint_noise
from checkpoint_kill_helper import PHASES, fault_state

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = ml_collections.ConfigDict({'max_to_keep': 3, 'async_save': True})


def _iterator():
  return iter(grain.MapDataset.range(1000).to_iter_dataset())


def _write(workdir, steps=(2, 4, 6), config=CONFIG):
  """Checkpoints `steps` of a run whose data iterator has yielded `step` elements at checkpoint `step`."""
  mngr = checkpoint.make_manager(str(workdir), config)
  it = _iterator()
  for step in range(1, max(steps) + 1):
    next(it)
    if step in steps:
      checkpoint.save(mngr, step, fault_state(step), it)
  checkpoint.close(mngr)


def _abstract():
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), fault_state(0))


def _resume(workdir, abstract=None):
  """(state, next element of the restored iterator, the steps orbax lists afterwards)."""
  mngr = checkpoint.make_manager(str(workdir), CONFIG)
  it = _iterator()
  try:
    state, how = checkpoint.restore_or_init(mngr, abstract_state=abstract or _abstract(), data_iter=it,
                                            init_fn=lambda: 'scratch', init_from='')
    assert how == 'resumed'
    return state, next(it), mngr.all_steps()
  finally:
    checkpoint.close(mngr)


def _assert_state(state, step):
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state,
               fault_state(step))


def _largest_data_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd'))
           for f in fs]
  return max(files, key=os.path.getsize)


def _flip_bytes(path):
  data = bytearray(open(path, 'rb').read())
  for i in range(16, len(data), 97):  # spread out, as bit rot or a half-synced block would be
    data[i] ^= 0x5A
  open(path, 'wb').write(bytes(data))


def _truncate(path):
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.truncate(size // 2)


FAULTS = {
    # fault: (what it does to a step folder, the reason the trainer names)
    'flipped bytes in a data file': (lambda d: _flip_bytes(_largest_data_file(d)), 'corrupt-data'),
    'deleted data file': (lambda d: os.remove(_largest_data_file(d)), 'corrupt-data'),  # reads as truncated
    'truncated metadata': (lambda d: _truncate(os.path.join(d, 'state', '_METADATA')), 'bad-metadata'),
    'deleted metadata': (lambda d: os.remove(os.path.join(d, 'state', '_METADATA')), 'missing-files'),
    'deleted commit marker': (lambda d: os.remove(os.path.join(d, checkpoint.COMMIT_MARKER)),
                              'no-commit-marker'),
    'truncated iterator state': (lambda d: _truncate(os.path.join(d, 'data', 'process_0-of-1.json')),
                                 'bad-iterator-state'),
    'deleted iterator state': (lambda d: os.remove(os.path.join(d, 'data', 'process_0-of-1.json')),
                               'missing-files'),
}


@pytest.mark.parametrize('fault', list(FAULTS))
def test_a_broken_newest_checkpoint_is_named_moved_aside_and_the_previous_one_resumes(tmp_path, caplog, fault):
  _write(tmp_path)
  damage, reason = FAULTS[fault]
  ckpts = tmp_path / 'checkpoints'
  damage(str(ckpts / '6'))
  with caplog.at_level(logging.WARNING):
    state, next_element, listed = _resume(tmp_path)
  _assert_state(state, 4)
  assert next_element == 4  # the data iterator is where it was at step 4
  assert sorted(os.listdir(ckpts)) == ['2', '4', f'6.broken-{reason}']  # renamed, not deleted
  assert listed == [2, 4]  # orbax no longer lists the moved step
  lines = [r.getMessage() for r in caplog.records]
  assert sum(f'checkpoint 6 in {ckpts} is broken ({reason})' in line for line in lines) == 1, lines
  assert 'resuming from step 4; 2 steps will be redone.' in lines


def test_the_next_save_of_a_moved_step_and_orbax_cleanup_leave_the_broken_folder_alone(tmp_path):
  _write(tmp_path)
  FAULTS['flipped bytes in a data file'][0](str(tmp_path / 'checkpoints' / '6'))
  _resume(tmp_path)
  _write(tmp_path, steps=(6, 8, 10))  # max_to_keep=3 deletes 2 and 4; the moved folder is not a step
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10', '6', '6.broken-corrupt-data', '8']
  _assert_state(_resume(tmp_path)[0], 10)


def test_every_kept_checkpoint_broken_stops_naming_each_and_moves_nothing(tmp_path):
  _write(tmp_path)
  ckpts = tmp_path / 'checkpoints'
  FAULTS['flipped bytes in a data file'][0](str(ckpts / '6'))
  FAULTS['deleted commit marker'][0](str(ckpts / '4'))
  FAULTS['truncated iterator state'][0](str(ckpts / '2'))
  with pytest.raises(checkpoint.NoUsableCheckpoint) as e:
    _resume(tmp_path)
  message = str(e.value)
  for line in ('step 6: corrupt-data', 'step 4: no-commit-marker', 'step 2: bad-iterator-state'):
    assert line in message, message
  assert 'Nothing was moved or deleted' in message
  assert sorted(os.listdir(ckpts)) == ['2', '4', '6']


def test_a_checkpoint_of_another_model_is_a_mismatch_not_a_broken_step(tmp_path):
  _write(tmp_path)
  wider = dict(_abstract())
  wider['w'] = jax.ShapeDtypeStruct((128, 512), wider['w'].dtype, sharding=wider['w'].sharding)
  with pytest.raises(checkpoint.CheckpointMismatch, match=r'does not fit this config.*w has shape \(128, 256\)'):
    _resume(tmp_path, wider)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4', '6']  # nothing moved aside


def test_readers_skip_a_broken_newest_checkpoint_without_renaming_it(tmp_path, caplog):
  _write(tmp_path)
  FAULTS['flipped bytes in a data file'][0](str(tmp_path / 'checkpoints' / '6'))
  target = {'w': _abstract()['w']}
  with caplog.at_level(logging.WARNING):
    loaded = checkpoint.restore_params(str(tmp_path), target, flag='--workdir')
  assert loaded['step'] == 4
  np.testing.assert_array_equal(np.asarray(loaded['w']), np.asarray(fault_state(4)['w']))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4', '6']  # someone else's run: left as it is
  text = '\n'.join(r.getMessage() for r in caplog.records)
  assert 'checkpoint 6' in text and 'corrupt-data' in text and 'using checkpoint 4' in text


def test_a_save_killed_in_any_phase_is_never_picked(tmp_path):
  """What orbax guarantees, checked: each phase of an async save killed by SIGKILL (hooks in the helper)."""
  procs = {phase: subprocess.Popen([sys.executable, os.path.join(HERE, 'checkpoint_kill_helper.py'),
                                    str(tmp_path / phase), phase], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for phase in PHASES}
  for phase, proc in procs.items():
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == -9, f'{phase}: not killed in that phase (status {proc.returncode}): {out[-2000:]}'
  for phase in PHASES:
    ckpts = tmp_path / phase / 'checkpoints'
    # Until the rename of its tmp folder, the interrupted save is not a step; after it, it is complete.
    expected = 2 if phase in ('renamed-old-step-not-deleted', 'old-step-half-deleted') else 1
    state, next_element, listed = _resume(tmp_path / phase)
    _assert_state(state, expected)
    assert next_element == expected and max(listed) == expected, (phase, listed, os.listdir(ckpts))


def _fail_data_writes(monkeypatch, code):
  def save(self, directory, item=None, args=None):
    raise OSError(code, os.strerror(code), os.fspath(directory))
  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, 'save', save)


def test_a_save_that_finds_the_disk_full_names_the_folder_and_the_space_and_keeps_earlier_checkpoints(
    tmp_path, monkeypatch):
  _write(tmp_path, steps=(2, 4))
  mngr = checkpoint.make_manager(str(tmp_path), CONFIG)
  _fail_data_writes(monkeypatch, errno.ENOSPC)
  with pytest.raises(checkpoint.SaveFailed) as e:
    checkpoint.save(mngr, 6, fault_state(6), _iterator())
    checkpoint.close(mngr)  # an asynchronous failure surfaces here at the latest
  monkeypatch.undo()
  message = str(e.value)
  ckpts = os.fspath(tmp_path / 'checkpoints')
  assert f'Checkpoint 6 could not be written to {ckpts}: no space left on device' in message, message
  assert 'MB free there' in message and 'Free at least' in message
  assert 'it resumes from checkpoint 4 (kept intact: 2, 4)' in message
  checkpoint.close(mngr)
  state, next_element, listed = _resume(tmp_path)
  _assert_state(state, 4)
  assert next_element == 4 and listed == [2, 4]


def test_a_save_without_write_permission_says_so(tmp_path, monkeypatch):
  _write(tmp_path, steps=(2,))
  mngr = checkpoint.make_manager(str(tmp_path), CONFIG)
  _fail_data_writes(monkeypatch, errno.EACCES)
  with pytest.raises(checkpoint.SaveFailed, match='Checkpoint 4 could not be written.*permission denied'):
    checkpoint.save(mngr, 4, fault_state(4), _iterator())
    checkpoint.close(mngr)
  monkeypatch.undo()
  checkpoint.close(mngr)
  _assert_state(_resume(tmp_path)[0], 2)


def _mount_tmpfs(path, size):
  os.makedirs(path)
  try:
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return done.returncode == 0


def test_a_real_full_filesystem_keeps_earlier_checkpoints_and_a_later_resume_is_exact(tmp_path):
  """The same on a size-limited tmpfs, where the machine lets the test mount one (root, no sandbox)."""
  mount = tmp_path / 'small'
  if not _mount_tmpfs(mount, '540k'):  # two checkpoints of 216 kB fit, a third does not
    pytest.skip('cannot mount a tmpfs here (needs root outside a sandbox); the simulated ENOSPC test covers it')
  try:
    with pytest.raises(checkpoint.SaveFailed, match=r'no space left on device .*kept intact: 2, 4'):
      _write(mount, steps=(2, 4, 6, 8))
    state, next_element, listed = _resume(mount)  # the next start also removes the partial save
    _assert_state(state, 4)
    assert next_element == 4 and listed == [2, 4]
    shutil.rmtree(mount / 'checkpoints' / '2')  # the user frees space
    _write(mount, steps=(6,))
    _assert_state(_resume(mount)[0], 6)
  finally:
    subprocess.run(['umount', str(mount)], check=False)


def test_an_unusable_workdir_is_named(tmp_path):
  (tmp_path / 'file').write_text('not a folder')
  with pytest.raises(checkpoint.UnusableWorkdir, match=f'cannot create {tmp_path / "file" / "run"}'):
    checkpoint.check_workdir(str(tmp_path / 'file' / 'run'))
  checkpoint.check_workdir(str(tmp_path / 'new' / 'run'))  # a missing one is created
  assert os.listdir(tmp_path / 'new' / 'run') == []  # and the probe file is gone


def test_an_unwritable_checkpoints_folder_is_named(tmp_path, monkeypatch):
  (tmp_path / 'checkpoints').mkdir()
  real_open = open

  def refusing_open(path, *args, **kwargs):
    # Root may write anywhere; a non-root user without permission gets exactly this error.
    if os.path.dirname(os.fspath(path)) == str(tmp_path / 'checkpoints'):
      raise PermissionError(errno.EACCES, 'Permission denied', path)
    return real_open(path, *args, **kwargs)
  monkeypatch.setattr('builtins.open', refusing_open)
  with pytest.raises(checkpoint.UnusableWorkdir, match=f'cannot write in {tmp_path / "checkpoints"}'):
    checkpoint.check_workdir(str(tmp_path))


def test_orbax_background_tracebacks_become_one_line_and_its_leftovers_print_nothing(monkeypatch):
  """What a failing asynchronous save prints besides its error (seen on a full tmpfs): orbax's thread errors with
  tracebacks, asyncio's 'exception was never retrieved', 'Event loop is closed' from tensorstore callbacks."""
  keep = checkpoint_noise.OneLineLibraryErrors()
  first = 'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at ".../4.orbax-checkpoint-tmp"'
  error = ValueError(first + '\nsecond line')
  orbax_file = os.path.join(os.path.dirname(ocp.__file__), 'future.py')
  thread_error = logging.LogRecord('absl', logging.ERROR, orbax_file, 1, 'thread raised: %s', (error,),
                                   (ValueError, error, None))
  assert keep.filter(thread_error) and thread_error.exc_info is None
  assert thread_error.getMessage() == f'thread raised: {first}'
  never_retrieved = logging.LogRecord('asyncio', logging.ERROR, 'base_events.py', 1,
                                      'Future exception was never retrieved', None, (ValueError, error, None))
  assert not keep.filter(never_retrieved)
  ours = logging.LogRecord('absl', logging.ERROR, __file__, 1, 'ours', None, (KeyError, KeyError('x'), None))
  assert keep.filter(ours) and ours.exc_info is not None  # anything else is left as it is
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  checkpoint_noise.mute_orbax_leftovers()
  closed = types.SimpleNamespace(exc_value=RuntimeError('Event loop is closed'), object=None)
  other = types.SimpleNamespace(exc_value=RuntimeError('something else'), object=None)
  sys.unraisablehook(closed)
  sys.unraisablehook(other)
  assert seen == [other]

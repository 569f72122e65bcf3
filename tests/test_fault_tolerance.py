"""Preemption, hard kills, broken checkpoints, full disks, several processes and changed meshes: the run's result
must not change, or the run stops with one message that says what to do."""

import errno
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aigc_jax.core import checkpoint
from aigc_jax import experiment
from aigc_jax.core import train
from test_checkpoint_faults import FAULTS
from tiny_config import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_SAMPLES = {'evals.samples.every': 0}
LONG = ('--config.num_steps=30', '--config.checkpoint_every=3', '--config.log_every=1',
        '--config.evals.samples.every=0')


def _start(workdir, *extra):
  return subprocess.Popen([sys.executable, '-m', 'aigc_jax.main', '--config=configs/ct.py:test',
                           f'--workdir={workdir}', *extra], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc, timeout=300):
  t0 = time.time()
  while not predicate():
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() - t0 < timeout, 'timed out'
    time.sleep(0.05)


def _saved_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _saved_state(workdir, step):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state', 'data'),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))['state']


def _saved_params_as_numpy(workdir, step, like):
  """Params of a checkpoint written on another topology (its sharding file names devices we lack)."""
  target = {'params': jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)}
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state', 'data'),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=args, partial_restore=True)))['state']['params']


def _logged_steps(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  return len(open(path).readlines()) if os.path.exists(path) else 0


@pytest.mark.slow  # ~3.5 min on 2 cores: three compiles of the step; run with `pytest -m slow`
def test_sigkill_at_an_unpredictable_step_then_resume_gives_the_uninterrupted_result(tmp_path):
  ref = experiment.train_and_evaluate(tiny_config(**{'num_steps': 30, 'checkpoint_every': 3, 'log_every': 1,
                                            'evals.samples.every': 0}), str(tmp_path / 'ref'))
  work = str(tmp_path / 'killed')
  proc = _start(work, *LONG)
  _wait_for(lambda: _saved_steps(work), proc)
  delay = random.Random(os.getpid()).uniform(0.0, 2.0)
  print(f'killing after {delay:.3f} s')  # shown on failure, so a failing moment can be replayed
  time.sleep(delay)
  proc.kill()  # SIGKILL: nothing can be saved, the run just dies
  proc.wait()
  killed_at = _logged_steps(work)
  assert proc.returncode == -signal.SIGKILL and killed_at < 30, f'finished before the kill ({killed_at})'
  rerun = _start(work, *LONG)
  out = rerun.communicate(timeout=600)[0]
  assert rerun.returncode == 0, out[-3000:]
  assert 'resumed at step' in out
  final = _saved_state(work, 30)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), ref.params, final['params'])
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), ref.ema_params, final['ema_params'])


def test_sigterm_saves_the_current_step_and_exits_cleanly(tmp_path):
  work = str(tmp_path / 'term')
  # The signal handling depends neither on the mesh nor on the network (preemption.Watcher; sharded saves are
  # tested elsewhere): one device, a one-level U-Net and no sample evaluation spare this test the slowest
  # compiles and the sharded save's.
  proc = _start(work, '--config.num_steps=100000', '--config.checkpoint_every=100000', '--config.log_every=1',
                '--config.evals.samples.every=0', '--config.mesh.num_devices=1', '--config.model.channels=(8,)',
                '--config.model.attention_levels=(False,)')
  _wait_for(lambda: _logged_steps(work) >= 3, proc)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 0, out[-3000:]
  step = int(out.split('Preempted: saved checkpoint ')[1].split()[0])
  assert _saved_steps(work) == [step] and 3 <= step < 100000
  assert int(_saved_state(work, step)['step']) == step


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_match_one_process_of_eight(tiny_run, tmp_path):
  # One process of eight: the module's uninterrupted tiny run (4 steps, every loss logged). The two processes
  # save only their last checkpoint, the one compared, and skip the sample evaluation (nothing here reads it).
  overrides = ('--config.num_steps=4', '--config.log_every=1', '--config.checkpoint_every=4',
               '--config.evals.samples.every=0')
  one_dir, one = tiny_run
  env = {**os.environ, 'NUM_PROCESSES': '2', 'DEVICES_PER_PROCESS': '4', 'PORT': str(_free_port()),
         'PYTHON': sys.executable,
         'XLA_FLAGS': os.environ['XLA_FLAGS'].replace('--xla_force_host_platform_device_count=8', '')}
  out = subprocess.run(['bash', 'launch/local_multiprocess.sh', '--config=configs/ct.py:test',
                        f'--workdir={tmp_path / "two"}', *overrides], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
  assert '8 cpu devices, 2 processes' in out.stderr
  losses = lambda w: [r['train/loss'] for r in map(json.loads, open(os.path.join(w, 'metrics.jsonl')))
                      if 'train/loss' in r]
  # The same global batches and keys; gloo sums the gradients across processes in another order than
  # XLA does within one, so only the last bits may differ.
  assert len(losses(one_dir)) == 4
  np.testing.assert_allclose(losses(tmp_path / 'two'), losses(one_dir), rtol=1e-5)
  final = _saved_params_as_numpy(str(tmp_path / 'two'), 4, one.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6),
               one.params, final)


@pytest.mark.parametrize('mesh', [{'mesh.num_devices': 4}, {'mesh.data': 4, 'mesh.fsdp': 2, 'mesh.fsdp_min_size': 0},
                                  {'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2, 'mesh.fsdp_min_size': 0}])
def test_checkpoint_from_eight_devices_restores_on_another_mesh(tiny_run, tmp_path, mesh):
  saved = tiny_run[1]  # trained and saved on the full mesh of eight devices
  restored = experiment.train_and_evaluate(tiny_config(**mesh), str(_copy(tiny_run, tmp_path)))  # restore only
  leaf = jax.tree.leaves(restored.params)[0]
  assert len(leaf.sharding.mesh.devices.flat) == (4 if 'mesh.num_devices' in mesh else 8)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               saved.params, restored.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               saved.opt_state, restored.opt_state)


def test_compile_report_shows_fsdp_dividing_the_state():
  replicated = experiment.compile_report(tiny_config(batch_size=8))
  split = experiment.compile_report(tiny_config(**{'batch_size': 8, 'mesh.data': 1, 'mesh.fsdp': 8,
                                          'mesh.fsdp_min_size': 0}))
  assert replicated['devices'] == split['devices'] == 8
  assert replicated['gflop_per_step'] > 0 and replicated['peak_mb_per_device'] > 0
  # Params, EMA and both Adam moments split 8 ways: per-device arguments shrink by several times.
  assert split['argument_mb'] < replicated['argument_mb'] / 3


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """An uninterrupted run of the tiny config (checkpoints 2 and 4; the same programs the other tests compile):
  the reference result, and a workdir whose copies the tests damage. It logs every step's loss (the
  one-process reference of the two-process test) and skips the sample evaluation (no test here reads it;
  tests/test_train.py checks it): neither changes the state or the checkpoints."""
  work = tmp_path_factory.mktemp('tiny') / 'run'
  return work, experiment.train_and_evaluate(tiny_config(log_every=1, **NO_SAMPLES), str(work))


def _copy(tiny_run, tmp_path):
  work = tmp_path / 'run'
  shutil.copytree(tiny_run[0], work)
  return work


def _assert_same_run(a, b):
  for x, y in ((a.params, b.params), (a.ema_params, b.ema_params), (a.opt_state, b.opt_state)):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), x, y)


def test_a_corrupt_newest_checkpoint_resumes_from_the_previous_one_with_the_uninterrupted_result(
    tiny_run, tmp_path, caplog):
  work = _copy(tiny_run, tmp_path)
  FAULTS['flipped bytes in a data file'][0](str(work / 'checkpoints' / '4'))
  with caplog.at_level(logging.WARNING):
    state = experiment.train_and_evaluate(tiny_config(**NO_SAMPLES), str(work))
  lines = [r.getMessage() for r in caplog.records]
  assert any(f'checkpoint 4 in {work / "checkpoints"} is broken (corrupt-data)' in line for line in lines), lines
  assert 'resuming from step 2; 2 steps will be redone.' in lines
  assert sorted(os.listdir(work / 'checkpoints')) == ['2', '4', '4.broken-corrupt-data']
  assert int(state.step) == 4
  _assert_same_run(tiny_run[1], state)


def test_sample_evaluate_and_denoise_use_the_newest_checkpoint_that_restores(tiny_run, tmp_path, caplog):
  work = _copy(tiny_run, tmp_path)
  FAULTS['deleted metadata'][0](str(work / 'checkpoints' / '4'))
  with caplog.at_level(logging.WARNING):
    _, _, ema_params, step = experiment.load_run(str(work))  # what their commands load the model with
  assert step == 2
  assert 'checkpoint 4' in caplog.text and 'missing-files' in caplog.text and 'using checkpoint 2' in caplog.text
  assert sorted(os.listdir(work / 'checkpoints')) == ['2', '4']  # read-only: nothing renamed
  assert jax.tree.structure(ema_params) == jax.tree.structure(tiny_run[1].ema_params)


@pytest.mark.slow  # ~25 s (two runs); test_checkpoint_faults.py covers the same with the state alone in seconds
def test_a_full_disk_stops_the_run_keeps_earlier_checkpoints_and_the_rerun_is_exact(tiny_run, tmp_path,
                                                                                    monkeypatch):
  """A simulated ENOSPC from the writer of checkpoint 4 (test_checkpoint_faults.py also fills a real tmpfs)."""
  work = tmp_path / 'run'
  original = grain.checkpoint.CheckpointHandler.save

  def save(self, directory, item=None, args=None):
    if os.path.basename(os.path.dirname(os.fspath(directory))).startswith('4.'):
      raise OSError(errno.ENOSPC, 'No space left on device', os.fspath(directory))
    return original(self, directory, item=item, args=args)
  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, 'save', save)
  with pytest.raises(checkpoint.SaveFailed) as e:
    experiment.train_and_evaluate(tiny_config(), str(work))
  assert f'Checkpoint 4 could not be written to {work / "checkpoints"}: no space left on device' in str(e.value)
  assert 'MB free there' in str(e.value) and 'it resumes from checkpoint 2 (kept intact: 2)' in str(e.value)
  assert [n for n in os.listdir(work / 'checkpoints') if n.isdigit()] == ['2']
  monkeypatch.undo()  # space freed
  _assert_same_run(tiny_run[1], experiment.train_and_evaluate(tiny_config(), str(work)))


def test_the_command_with_every_checkpoint_broken_exits_with_one_message_naming_each(tiny_run, tmp_path):
  work = _copy(tiny_run, tmp_path)
  FAULTS['flipped bytes in a data file'][0](str(work / 'checkpoints' / '4'))
  FAULTS['truncated iterator state'][0](str(work / 'checkpoints' / '2'))
  out = subprocess.run([sys.executable, '-m', 'aigc_jax.main', '--config=configs/ct.py:test',
                        f'--workdir={work}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 1, out.stderr[-3000:]
  assert f'no checkpoint in {work / "checkpoints"} restores' in out.stderr, out.stderr[-3000:]
  assert 'step 4: corrupt-data' in out.stderr and 'step 2: bad-iterator-state' in out.stderr
  for cascade in ('Traceback', 'Event loop is closed', 'Exception ignored'):
    assert cascade not in out.stderr, out.stderr[-3000:]
  assert sorted(os.listdir(work / 'checkpoints')) == ['2', '4']


def test_an_unusable_workdir_is_named_before_anything_compiles(tmp_path, monkeypatch):
  (tmp_path / 'file').write_text('')
  monkeypatch.setattr(train, '_setup', lambda config: pytest.fail('reached the setup and compile'))
  with pytest.raises(checkpoint.UnusableWorkdir, match=f'cannot create {tmp_path / "file" / "run"}'):
    experiment.train_and_evaluate(tiny_config(), str(tmp_path / 'file' / 'run'))


def _start_two(workdir, *extra):
  """Two processes of 4 fake devices each, as launch/local_multiprocess.sh starts them; logs in workdir/.."""
  port = _free_port()
  flags = os.environ['XLA_FLAGS'].replace('--xla_force_host_platform_device_count=8',
                                         '--xla_force_host_platform_device_count=4')
  env = {**os.environ, 'XLA_FLAGS': flags}
  return [subprocess.Popen([sys.executable, '-m', 'aigc_jax.main', '--config=configs/ct.py:test',
                            f'--workdir={workdir}', *extra, f'--coordinator_address=127.0.0.1:{port}',
                            '--num_processes=2', f'--process_id={i}'], cwd=ROOT, env=env,
                           stderr=subprocess.STDOUT, stdout=open(f'{workdir}.process_{i}.log', 'w'))
          for i in range(2)]


def _log(workdir, i):
  return open(f'{workdir}.process_{i}.log').read()


@pytest.mark.slow  # ~4 min on 2 cores: three runs of two processes
def test_sigkill_of_one_of_two_processes_stops_the_other_and_both_resume_exactly(tmp_path):
  args = ('--config.num_steps=12', '--config.checkpoint_every=3', '--config.log_every=1',
          '--config.evals.samples.every=0', '--heartbeat_timeout_s=10')
  ref = tmp_path / 'ref'
  for i, proc in enumerate(_start_two(ref, *args)):
    assert proc.wait(timeout=600) == 0, _log(ref, i)[-3000:]
  work = tmp_path / 'killed'
  procs = _start_two(work, *args)
  _wait_for(lambda: _saved_steps(work), procs[0], timeout=600)
  procs[1].kill()
  killed = time.time()
  try:
    status = procs[0].wait(timeout=120)  # ten seconds of missed heartbeats, then JAX stops it
  except subprocess.TimeoutExpired:
    procs[0].kill()
    pytest.fail('process 0 still ran two minutes after process 1 died: ' + _log(work, 0)[-3000:])
  assert status != 0 and time.time() - killed < 120
  assert _logged_steps(work) < 12, 'finished before the kill'
  for i, proc in enumerate(_start_two(work, *args)):
    assert proc.wait(timeout=600) == 0, _log(work, i)[-3000:]
  assert 'resumed at step' in _log(work, 0)
  like = train._setup(tiny_config()).abstract  # pylint: disable=protected-access
  for name in ('params', 'ema_params'):
    target = {name: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), getattr(like, name))}
    args_ = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    saved = []
    for w in (ref, work):
      with ocp.CheckpointManager(os.path.join(w, 'checkpoints'), item_names=('state', 'data'),
                                 options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
        saved.append(mngr.restore(12, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=args_, partial_restore=True)))['state'][name])
    jax.tree.map(np.testing.assert_array_equal, *saved)

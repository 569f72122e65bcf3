"""Preemption, hard kills, several processes and changed meshes: the run's result must not change."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aigc_jax import train
from tiny_config import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = ('--config.num_steps=30', '--config.checkpoint_every=3', '--config.log_every=1',
        '--config.sample_every=100000')


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
  ref = train.train_and_evaluate(tiny_config(**{'num_steps': 30, 'checkpoint_every': 3, 'log_every': 1,
                                            'sample_every': 100000}), str(tmp_path / 'ref'))
  work = str(tmp_path / 'killed')
  proc = _start(work, *LONG)
  _wait_for(lambda: _saved_steps(work), proc)
  time.sleep(random.uniform(0.0, 2.0))
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
  proc = _start(work, '--config.num_steps=100000', '--config.checkpoint_every=100000', '--config.log_every=1')
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


def test_two_processes_of_four_devices_match_one_process_of_eight(tmp_path):
  overrides = ('--config.num_steps=4', '--config.log_every=1')
  one = train.train_and_evaluate(tiny_config(num_steps=4, log_every=1), str(tmp_path / 'one'))
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
  np.testing.assert_allclose(losses(tmp_path / 'two'), losses(tmp_path / 'one'), rtol=1e-5)
  final = _saved_params_as_numpy(str(tmp_path / 'two'), 4, one.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6),
               one.params, final)


@pytest.mark.parametrize('mesh', [{'mesh.num_devices': 4}, {'mesh.data': 4, 'mesh.fsdp': 2, 'mesh.fsdp_min_size': 0},
                                  {'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2, 'mesh.fsdp_min_size': 0}])
def test_checkpoint_from_eight_devices_restores_on_another_mesh(tmp_path, mesh):
  saved = train.train_and_evaluate(tiny_config(), str(tmp_path))
  restored = train.train_and_evaluate(tiny_config(**mesh), str(tmp_path))  # num_steps reached: restore only
  leaf = jax.tree.leaves(restored.params)[0]
  assert len(leaf.sharding.mesh.devices.flat) == (4 if 'mesh.num_devices' in mesh else 8)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               saved.params, restored.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               saved.opt_state, restored.opt_state)


def test_compile_report_shows_fsdp_dividing_the_state():
  replicated = train.compile_report(tiny_config(batch_size=8))
  split = train.compile_report(tiny_config(**{'batch_size': 8, 'mesh.data': 1, 'mesh.fsdp': 8,
                                          'mesh.fsdp_min_size': 0}))
  assert replicated['devices'] == split['devices'] == 8
  assert replicated['gflop_per_step'] > 0 and replicated['peak_mb_per_device'] > 0
  # Params, EMA and both Adam moments split 8 ways: per-device arguments shrink by several times.
  assert split['argument_mb'] < replicated['argument_mb'] / 3

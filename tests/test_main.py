"""The command line as a user runs it, in a subprocess (flags, config overrides, resume)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'aigc_jax.main', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def test_main_trains_then_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  first = _main('--config=configs/ct.py:test', f'--workdir={workdir}', '--config.num_steps=2',
                '--config.log_every=1')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'scratch at step 0' in first.stderr and 'step 2/2  loss' in first.stderr
  assert os.path.exists(os.path.join(workdir, 'samples', 'samples_0000002.png'))
  # Library chatter is filtered: a run's log is our lines plus warnings, not orbax's 40 lines a save.
  assert 'orbax' not in first.stderr.split('Config:')[-1].split('scratch at step 0')[-1].lower()
  again = _main('--config=configs/ct.py:test', f'--workdir={workdir}', '--config.num_steps=3')
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'resumed at step 2' in again.stderr and 'step 3/3' in again.stderr


def test_unknown_config_key_fails_at_once_and_names_it(tmp_path):
  out = _main('--config=configs/ct.py:test', f'--workdir={tmp_path}', '--config.model.chanels=8')
  assert out.returncode != 0
  assert 'chanels' in out.stderr
  assert not os.listdir(tmp_path)  # nothing started


def test_unknown_variant_is_named(tmp_path):
  out = _main('--config=configs/ct.py:runlokal', f'--workdir={tmp_path}')
  assert out.returncode != 0 and "unknown variant 'runlokal'" in out.stderr

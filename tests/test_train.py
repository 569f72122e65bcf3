"""The trainer end to end on the tiny `configs/ct.py:test` variant, on fake CPU meshes."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from aigc_jax.core import checkpoint
from aigc_jax.core import reporting
from aigc_jax import experiment
from tiny_config import tiny_config


def _config(**overrides):
  return tiny_config(**{"log_every": 1, **overrides})


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [row['train/loss'] for row in map(json.loads, f) if 'train/loss' in row]


def _assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_eight_devices_and_fsdp_with_tensor_parallelism_match_one_device(tmp_path):
  one = experiment.train_and_evaluate(_config(**{'mesh.num_devices': 1}), str(tmp_path / 'one'))
  eight = experiment.train_and_evaluate(_config(), str(tmp_path / 'eight'))
  fsdp = experiment.train_and_evaluate(
      _config(**{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2, 'mesh.fsdp_min_size': 0}),
      str(tmp_path / 'fsdp'))
  assert len(eight.params['Conv_0']['kernel'].sharding.device_set) == 8
  specs = {str(x.sharding.spec) for x in jax.tree.leaves(fsdp.params)}
  # Kernels really split over both axes, by their logical names (conv: in → tensor, out → fsdp).
  assert "P(None, None, 'tensor', 'fsdp')" in specs, specs
  assert fsdp.opt_state[1].mu['mid_res0']['Conv_0']['kernel'].sharding == fsdp.params['mid_res0']['Conv_0'][
      'kernel'].sharding  # Adam's moments live where their parameter lives
  ref = _losses(tmp_path / 'one')
  assert len(ref) == 4
  for name in ('eight', 'fsdp'):
    # Same global batch and randomness; only the order of floating-point reductions differs.
    np.testing.assert_allclose(_losses(tmp_path / name), ref, rtol=2e-5)
  jax.tree.map(lambda a, b, c: (np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                                np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)),
               one.params, eight.params, fsdp.params)


def test_resume_from_a_checkpoint_is_exact(tmp_path):
  straight = experiment.train_and_evaluate(_config(), str(tmp_path / 'a'))
  interrupted = tmp_path / 'b'
  experiment.train_and_evaluate(_config(), str(interrupted))
  # Throw away the final checkpoint, as if the run had died after step 2: the rerun resumes from step 2.
  shutil.rmtree(interrupted / 'checkpoints' / '4')
  resumed = experiment.train_and_evaluate(_config(), str(interrupted))
  assert int(resumed.step) == 4
  _assert_trees_equal(straight.params, resumed.params)
  _assert_trees_equal(straight.opt_state, resumed.opt_state)
  _assert_trees_equal(straight.ema_params, resumed.ema_params)


def test_run_writes_events_samples_and_checkpoints(tmp_path):
  experiment.train_and_evaluate(_config(), str(tmp_path))
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert os.listdir(tmp_path / 'samples') == ['samples_0000004.png']
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in rows if 'train/loss' in r] == [1, 2, 3, 4]
  assert {'train/loss', 'train/lr', 'train/grad_norm', 'perf/examples_per_s'} <= set(rows[0])
  # The configured evaluator (config.evals.samples, type ct_samples) scores its samples against held-out
  # slices at its interval, under its own name.
  evals = [r for r in rows if 'samples/hu_w1' in r]
  assert [r['step'] for r in evals] == [4] and 0 <= evals[0]['samples/anatomy_plausible'] <= 1
  assert np.isfinite(evals[0]['samples/kid'])  # in the shipped feature space
  # A rerun with another model stops at the checkpoints and leaves the config.json they were written with.
  written = open(tmp_path / 'config.json').read()
  other = _config(**{'model.channels': (8, 24)})
  with pytest.raises(checkpoint.CheckpointMismatch, match='does not fit this config'):
    experiment.train_and_evaluate(other, str(tmp_path))
  assert open(tmp_path / 'config.json').read() == written


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
  experiment.train_and_evaluate(_config(), str(tmp_path))
  # Continue the same run to step 8 with a learning rate that makes the parameters overflow.
  bad = _config(**{'num_steps': 8, 'optim.learning_rate': 1e30})
  with pytest.raises(reporting.NonFiniteLossError, match=r'checkpoint 4 is kept.*learning_rate'):
    experiment.train_and_evaluate(bad, str(tmp_path))
  mngr = checkpoint.make_manager(str(tmp_path), bad.checkpoint)
  assert mngr.latest_step() == 4
  mngr.close()


def test_init_from_takes_params_from_another_workdir(tmp_path):
  first = experiment.train_and_evaluate(_config(), str(tmp_path / 'pretrain'))
  # With a zero learning rate the fine-tuned params must still be exactly the ones it started from.
  tuned = experiment.train_and_evaluate(
      _config(**{'init_from': str(tmp_path / 'pretrain'), 'optim.learning_rate': 0.0}), str(tmp_path / 'tune'))
  _assert_trees_equal(first.params, tuned.params)
  assert int(tuned.step) == 4


def test_init_from_a_missing_folder_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='config.init_from'):
    experiment.train_and_evaluate(_config(**{'init_from': str(tmp_path / 'nope')}), str(tmp_path / 'w'))


def test_batch_that_does_not_divide_over_devices_is_named(tmp_path):
  with pytest.raises(ValueError, match='batch_size=6 must be divisible by the 8'):
    experiment.train_and_evaluate(_config(batch_size=6), str(tmp_path))

"""Membership inference: the attack metrics against scikit-learn and hand-worked cases, and the audit command
on tiny CT and tabular runs (members drawn from what the run was served, a reference run trained by the same
trainer)."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from aigc_jax import audit
from aigc_jax import experiment
from aigc_jax.data import pipeline
from aigc_jax.evals import membership
from configs import ct_features
from configs import risk
from tiny_config import tiny_diffusion_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_attack_metrics_match_scikit_learn_and_hand_worked_cases():
  rng = np.random.default_rng(0)
  m, n = rng.normal(0.5, 1, 300).round(1), rng.normal(0, 1, 400).round(1)  # rounded: many ties
  y = np.r_[np.ones(300), np.zeros(400)]
  assert membership.auc(m, n) == pytest.approx(sk_metrics.roc_auc_score(y, np.r_[m, n]), abs=1e-12)
  fpr, tpr, _ = sk_metrics.roc_curve(y, np.r_[m, n])
  assert membership.tpr_at(m, n, 0.01) == pytest.approx(tpr[fpr <= 0.01].max())
  # Hand-worked: members 3, 2, 0.5; non-members 1, 0. At FPR 0 the two highest members are caught (2/3).
  assert membership.auc(np.array([3.0, 2.0, 0.5]), np.array([1.0, 0.0])) == pytest.approx(5 / 6)
  assert membership.tpr_at(np.array([3.0, 2.0, 0.5]), np.array([1.0, 0.0]), 0.001) == pytest.approx(2 / 3)
  same = membership.attack_report(m, m, boots=100)
  assert same['auc'] == pytest.approx(0.5) and same['auc_lo'] < 0.5 < same['auc_hi']
  apart = membership.attack_report(m + 10, n, boots=100)
  assert apart['auc'] == 1.0 and apart['tpr@0.1%fpr'] == 1.0 and apart['auc_lo'] == pytest.approx(1.0)
  with pytest.raises(ValueError, match='needs members and non-members'):
    membership.attack_report(m, np.zeros(0))


def test_audit_scores_served_members_against_held_out_slices_with_a_reference_run(tmp_path):
  c = ct_features.get_config('test')
  c.data.num_train = 48
  c.num_steps, c.batch_size, c.checkpoint_every = 4, 8, 4
  work = str(tmp_path / 'run')
  experiment.train_and_evaluate(c, work)
  served = pipeline.trained_indices(work, c, 4)
  assert len(served) == 32  # 4 steps × 8 of 48 slices: less than an epoch, so not every slice is a member
  # They are the slices the run's 4 batches held (no augmentation in this config), in the order served.
  held = pipeline.examples_at(c.data, pipeline.make_source(c.data), served)['image'][..., 0]
  np.testing.assert_array_equal(held, pipeline.first_images(c.data, 32, c.batch_size))
  report = audit.audit(work, num=16, repeats=1, references=1, out_dir=str(tmp_path / 'audit'))
  assert report['members'] == '16 of the 32 training slices served'
  assert report['nonmembers'].startswith('16 of phantom_ct seed 7001')
  for attack in ('loss', 'calibrated'):
    r = report['attacks'][attack]
    assert 0 <= r['auc_lo'] <= r['auc'] <= r['auc_hi'] <= 1 and r['members'] == 16
  ref = json.loads((tmp_path / 'audit' / 'reference_0' / 'config.json').read_text())
  assert ref['data']['seed'] == c.data.seed + audit.REFERENCE_SEED_OFFSET and ref['evals'] == {}
  written = json.loads((tmp_path / 'audit' / 'audit_4.json').read_text())
  assert written['attacks']['loss']['auc'] == report['attacks']['loss']['auc'] and 'privacy' not in written
  with pytest.raises(ValueError, match='no timesteps to choose'):
    audit.audit(work, num=16, timesteps=(10,), out_dir=str(tmp_path / 'audit'))

  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-m', 'aigc_jax.audit', f'--workdir={tmp_path / "nothing"}'], cwd=ROOT,
                        env=env, capture_output=True, text=True)
  assert proc.returncode != 0 and 'config.json not found' in proc.stderr


def test_audit_of_a_row_source_run_scores_the_rows_it_was_served_against_the_test_split(tmp_path):
  c = risk.get_config('test')
  c.evals = type(c.evals)()
  work = str(tmp_path / 'run')
  experiment.train_and_evaluate(c, work)
  _, _, _, _, data = experiment.load_run(work, with_data=True)
  train = data.rows('train')
  served = pipeline.trained_indices(work, c, 4, len(train['features']))
  assert len(served) == 32 < len(train['features'])   # 4 steps × 8 rows, less than an epoch
  # They are the rows the run's 4 batches held, in the order served.
  stream = iter(data.make_dataset(batch_size=c.batch_size, process_index=0, process_count=1))
  np.testing.assert_array_equal(np.concatenate([next(stream)['features'] for _ in range(4)]),
                                train['features'][served])
  report = audit.audit(work, num=16, repeats=1, out_dir=str(tmp_path / 'audit'))
  assert report['members'] == '16 of the 32 training tabular rows served'
  assert re.fullmatch(r'16 of the \d+ test tabular rows', report['nonmembers'])
  r = report['attacks']['loss']
  assert 0 <= r['auc_lo'] <= r['auc'] <= r['auc_hi'] <= 1 and r['members'] == r['nonmembers'] == 16
  with pytest.raises(ValueError, match='only the phantom makes'):
    audit.audit(work, num=16, references=1, out_dir=str(tmp_path / 'audit'))


def test_audit_of_a_diffusion_run_attacks_its_denoising_loss_at_chosen_timesteps(tmp_path):
  work = str(tmp_path / 'run')
  c, _ = tiny_diffusion_run(work)
  report = audit.audit(work, num=8, repeats=2, timesteps=(0, 40), out_dir=str(tmp_path / 'audit'))
  assert set(report['attacks']) == {'loss', 'loss@t=0', 'loss@t=40'}
  # The same keys score every step, so a timestep ignored would give equal losses; each mean is what
  # per_example_losses gives at that step.
  _, task, params, _ = experiment.load_run(work)
  at = report['mean_loss_at']
  assert at['t=0']['members'] != at['t=40']['members']
  held_out, _ = pipeline.held_out_source(c.data, num=8)
  nonmembers = pipeline.examples_at(c.data, held_out, range(8))
  direct = membership.per_example_losses(task, params, nonmembers, key=jax.random.PRNGKey(0), repeats=2,
                                         timestep=40)
  assert at['t=40']['nonmembers'] == pytest.approx(direct.mean(), rel=1e-6)
  with pytest.raises(ValueError, match=r'outside the model\'s steps 0…49'):
    audit.audit(work, num=8, timesteps=(50,))

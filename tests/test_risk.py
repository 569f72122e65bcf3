"""Risk prediction: cohorts, encoding, the masked BCE task, the metrics against scikit-learn, the trainer run
and the baseline command (configs/risk.py)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.data import tabular
from aigc_jax.evals import risk
from aigc_jax.tabular import baselines
from aigc_jax.tabular import cohorts
from configs import risk as risk_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_metrics_match_scikit_learn_and_a_hand_ece():
  rng = np.random.default_rng(0)
  y = (rng.random(300) < 0.3).astype(float)
  p = np.clip(0.3 * y + 0.6 * rng.random(300), 0, 1).round(2)   # rounded: many ties
  s = risk.scores(y, p)
  assert s['auroc'] == pytest.approx(skm.roc_auc_score(y, p))
  assert s['auprc'] == pytest.approx(skm.average_precision_score(y, p))
  assert s['brier'] == pytest.approx(skm.brier_score_loss(y, p))
  assert s['log_loss'] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
  # ECE by hand: four patients in bin 0.1–0.2 (mean 0.15, observed 0.25), two in 0.9–1.0 (0.95 vs 1.0).
  y2, p2 = np.array([1, 0, 0, 0, 1, 1.]), np.array([0.1, 0.12, 0.18, 0.2 - 1e-9, 0.9, 1.0])
  hand = 4 / 6 * abs(0.25 - np.mean(p2[:4])) + 2 / 6 * abs(1.0 - 0.95)
  assert risk.expected_calibration_error(y2, p2, 10) == pytest.approx(hand)
  assert risk.expected_calibration_error(y2, y2, 10) == 0.0   # certain and right: perfectly calibrated


def test_flchain_outcomes_are_masked_where_censored_and_follow_up_is_no_feature():
  c = cohorts.load('flchain')
  assert c.label_names == ('death_5y', 'death_10y') and len(c.ids) > 7_000
  assert 'futime' not in c.numeric and 'chapter' not in c.categorical and 'death' not in c.numeric
  # A 10-year outcome unknown (censored) but a 5-year one known: alive at 5 years, lost before 10.
  unknown_10 = (c.mask[:, 1] == 0) & (c.mask[:, 0] == 1)
  assert unknown_10.sum() > 500 and np.all(c.labels[unknown_10, 0] == 0)
  # Death within 5 years is death within 10 years.
  died_5 = c.labels[:, 0] == 1
  assert np.all(c.mask[died_5, 1] == 1) and np.all(c.labels[died_5, 1] == 1)


def test_split_is_by_patient_and_the_encoder_learns_from_training_only():
  c = cohorts.load('flchain')
  parts = {s: cohorts.split(c, s, 0.15, 0.25) for s in ('train', 'validation', 'test')}
  ids = [set(p.ids.tolist()) for p in parts.values()]
  assert sum(map(len, ids)) == len(c.ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
  enc = cohorts.Encoder.fit(parts['train'])
  x = enc(parts['train'])
  j = enc.columns.index('kappa')
  assert abs(x[:, j].mean()) < 1e-5 and x[:, j].std() == pytest.approx(1.0, abs=1e-4)
  assert 'creatinine_missing' in enc.columns and 'sex=F' in enc.columns
  raw = parts['test'].numeric['creatinine']
  assert np.array_equal(enc(parts['test'])[:, enc.columns.index('creatinine_missing')], np.isnan(raw))
  # A category never seen in training is all zeros in its one-hot block, not an error.
  odd = parts['test'].take(np.arange(3))
  odd.categorical['sex'][:] = 'X'
  assert not enc(odd)[:, [enc.columns.index('sex=F'), enc.columns.index('sex=M')]].any()


def test_loss_is_the_masked_bce_and_a_masked_outcome_gets_no_gradient():
  c = risk_config.get_config('test')
  task = registry.build_task(c)
  batch = {'features': jnp.asarray(np.random.default_rng(1).normal(size=(4, 10)), jnp.float32),
           'labels': jnp.array([[1, 1], [0, 0], [0, 1], [1, 0]], jnp.float32),
           'label_mask': jnp.array([[1, 1], [1, 0], [1, 1], [0, 1]], jnp.float32)}
  params = task.init(jax.random.PRNGKey(0), batch)
  z = np.asarray(task.predict(params, batch))
  y, m = np.asarray(batch['labels']), np.asarray(batch['label_mask'])
  hand = -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
  c.model.dropout = 0.0
  task = registry.build_task(c)
  losses, _ = task.per_example_loss(params, batch, jax.random.PRNGKey(2))
  np.testing.assert_allclose(losses, (hand * m).sum(1) / m.sum(1), rtol=1e-5)
  # Patient 1's outcome 1 is masked: changing that label changes no gradient.
  flipped = dict(batch, labels=batch['labels'].at[1, 1].set(1.0))
  grad = lambda b: jax.grad(lambda p: task.loss(p, b, jax.random.PRNGKey(2))[0])(params)
  jax.tree.map(np.testing.assert_array_equal, grad(batch), grad(flipped))


def test_risk_run_writes_scores_and_reliability_plots_and_the_baselines_run_on_its_split(tmp_path):
  c = risk_config.get_config('test')
  experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  logged = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/death_10y_auroc' in r][-1]
  assert 0 <= test['test/death_10y_auroc'] <= 1 and test['test/death_5y_patients'] > 1_000
  assert os.path.exists(tmp_path / 'run' / 'test' / 'reliability_death_10y_0000004.png')
  assert os.path.exists(tmp_path / 'run' / 'test' / 'calibration_death_5y_0000004.txt')
  out = tmp_path / 'baseline.json'
  subprocess.run([sys.executable, '-m', 'aigc_jax.baseline', '--config=configs/risk.py:runlocal_pima',
                  f'--out={out}'], check=True, capture_output=True, cwd=ROOT)
  base = json.loads(out.read_text())
  pima = tabular.TabularRows(risk_config.get_config('runlocal_pima').data)
  assert base['patients']['test'] == len(pima.rows('test')['labels'])
  for model in ('logistic_regression', 'gradient_boosting'):   # glucose and BMI predict diabetes well
    assert base[model]['diabetes_auroc'] > 0.75, (model, base[model])
  assert base['logistic_regression']['chosen'][0]['C'] in baselines.C_GRID


def test_every_cohort_variant_builds_a_model_with_its_outcome_count():
  for variant in ('runlocal', 'runlocal_pima', 'runlocal_breast_cancer'):
    c = risk_config.get_config(variant)
    data = registry.build_data(c)
    assert c.model.num_labels == len(data.label_names)
    assert data.rows('train')['features'].shape[1] == len(data.encoder.columns)
  with pytest.raises(ValueError, match='not a cohort'):
    cohorts.load('mimic')

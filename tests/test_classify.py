"""The diagnostic classifier: `diagnostic_scores` (what a diagnostic paper reports) on hand-made cases, checked
by hand and against scikit-learn, configs/ct_classify.py:test trained through the trainer, and the classifier on
an autoencoder's or a diffusion U-Net's encoder started from a trained one (config.init_parts)."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from sklearn import metrics

from aigc_jax import experiment
from aigc_jax.core import checkpoint
from aigc_jax.evals import classification
from configs import ct_classify
from configs import ct_vae
from tiny_config import tiny_diffusion_run


def probs_of(abnormal_score: np.ndarray, k: int = 3) -> np.ndarray:
  """Class probabilities whose 1 − p(class 0) is `abnormal_score`, the rest split evenly over classes 1…k−1."""
  s = np.asarray(abnormal_score, np.float64)
  return np.concatenate([(1 - s)[:, None], np.repeat(s[:, None] / (k - 1), k - 1, axis=1)], axis=1)


def test_perfect_and_reversed_separation():
  labels = np.array([0, 0, 0, 0, 1, 2, 1, 2])
  score = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
  perfect = classification.diagnostic_scores(labels, probs_of(score))
  assert perfect['abnormal_auroc'] == 1.0 and perfect['abnormal_auprc'] == 1.0
  assert perfect['sensitivity_at_specificity_0.9'] == perfect['sensitivity_at_specificity_0.95'] == 1.0
  assert perfect['abnormal_prevalence'] == 0.5
  reversed_ = classification.diagnostic_scores(labels, probs_of(1 - score))
  assert reversed_['abnormal_auroc'] == 0.0
  # Every abnormal case scores below every normal one: at specificity ≥ 0.9 (no normal case called
  # abnormal) no abnormal case is called either.
  assert reversed_['sensitivity_at_specificity_0.9'] == 0.0
  # Average precision of the reversed ranking, by hand: the positives come at ranks 5…8, precisions 1/5,
  # 2/6, 3/7, 4/8, each recall step 1/4.
  assert reversed_['abnormal_auprc'] == pytest.approx((1 / 5 + 2 / 6 + 3 / 7 + 4 / 8) / 4)


def test_sensitivity_at_specificity_on_a_known_roc():
  # 10 normal cases scored 0.00…0.09 and 0.95 (the top one), 5 abnormal cases scored 0.5…0.9.
  normal = np.r_[np.arange(9) / 100, 0.95]
  abnormal = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
  labels = np.r_[np.zeros(10, int), np.ones(5, int)]
  score = np.r_[normal, abnormal]
  out = classification.diagnostic_scores(labels, probs_of(score), specificities=(0.9, 0.95, 1.0))
  # Threshold 0.5 calls all 5 abnormal and the one normal case at 0.95: specificity 9/10 = 0.9, sensitivity 1.
  assert out['sensitivity_at_specificity_0.9'] == 1.0
  # Specificity ≥ 0.95 allows no normal case above the threshold: only thresholds above 0.95, which call no one.
  assert out['sensitivity_at_specificity_0.95'] == 0.0 and out['sensitivity_at_specificity_1'] == 0.0
  # The (sensitivity, specificity, threshold) behind it.
  points = classification.operating_points(labels != 0, score, (0.9, 0.95))
  assert points[0] == (1.0, 0.9, 0.5) and points[1] == (0.0, 1.0, np.inf)
  assert out['abnormal_auroc'] == pytest.approx(metrics.roc_auc_score(labels, score)) == pytest.approx(0.9)
  # A specificity met exactly, 93 of 100 normal cases below the threshold, where 1 − 7/100 rounds to
  # 0.9299999999999999 < 0.93 in floating point: the operating point must still count.
  labels = np.r_[np.zeros(100, int), np.ones(4, int)]
  score = np.r_[np.arange(93) / 1000, 0.5 + np.arange(7) / 100, 0.2, 0.3, 0.4, 0.45]
  out = classification.diagnostic_scores(labels, probs_of(score), specificities=(0.93,))
  assert out['sensitivity_at_specificity_0.93'] == 1.0
  assert out['abnormal_auprc'] == pytest.approx(metrics.average_precision_score(labels, score))


def test_scores_agree_with_scikit_learn_on_random_cases():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 3, 300)
  logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[labels]
  logits[:40] = np.round(logits[:40])  # ties
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  out = classification.diagnostic_scores(labels, probs)
  abnormal, score = labels != 0, 1 - probs[:, 0]
  assert out['abnormal_auroc'] == pytest.approx(metrics.roc_auc_score(abnormal, score))
  assert out['abnormal_auprc'] == pytest.approx(metrics.average_precision_score(abnormal, score))
  fpr, tpr, _ = metrics.roc_curve(abnormal, score, drop_intermediate=False)
  for t in (0.9, 0.95):
    assert out[f'sensitivity_at_specificity_{t:g}'] == pytest.approx(tpr[fpr <= 1 - t + 1e-12].max())
  ovr = [metrics.roc_auc_score(labels == k, probs[:, k]) for k in range(3)]
  for k in range(3):
    assert out[f'auroc_ovr_{k}'] == pytest.approx(ovr[k])
  assert out['auroc_ovr_macro'] == pytest.approx(metrics.roc_auc_score(labels, probs, multi_class='ovr'))


def test_top_label_ece_of_calibrated_and_overconfident_predictions():
  # 10 cases of class 0 and 10 of class 1, each with p = (0.7, 0.3, 0) or (0.3, 0.7, 0) so that the top
  # label is right in 7 of every 10: confidence 0.7 and accuracy 0.7 in the one occupied bin → ECE 0.
  labels = np.r_[np.zeros(10, int), np.ones(10, int)]
  right = np.r_[np.ones(7), np.zeros(3), np.ones(7), np.zeros(3)].astype(bool)
  top = np.where(right, labels, 1 - labels)
  calibrated = np.zeros((20, 3))
  calibrated[np.arange(20), top] = 0.7
  calibrated[np.arange(20), 1 - top] = 0.3
  assert classification.diagnostic_scores(labels, calibrated)['top_label_ece'] == pytest.approx(0.0, abs=1e-12)
  # The same answers at confidence 0.95 (bin 0.9–1.0): accuracy 0.7, so ECE = |0.7 − 0.95| = 0.25.
  overconfident = np.zeros((20, 3))
  overconfident[np.arange(20), top] = 0.95
  overconfident[np.arange(20), 1 - top] = 0.05
  assert classification.diagnostic_scores(labels, overconfident)['top_label_ece'] == pytest.approx(0.25)
  # Two bins: the 10 class-0 cases, all right, at 0.95; the 10 class-1 cases at 0.65, 5 of them right:
  # ECE = 0.5·|1 − 0.95| + 0.5·|0.5 − 0.65| = 0.1 (one bin would pool them: |0.75 − 0.8| = 0.05).
  mixed = np.zeros((20, 3))
  mixed[:10, 0], mixed[:10, 2] = 0.95, 0.05
  mixed[10:15, 1], mixed[15:, 0] = 0.65, 0.65
  mixed[10:, 2] = 0.35
  assert classification.diagnostic_scores(labels, mixed)['top_label_ece'] == pytest.approx(0.1)


def test_absent_classes_are_left_out_not_scored():
  labels = np.array([0, 0, 1, 1])
  out = classification.diagnostic_scores(labels, probs_of(np.array([0.1, 0.2, 0.8, 0.9])))
  assert 'auroc_ovr_2' not in out and out['auroc_ovr_0'] == out['auroc_ovr_1'] == 1.0
  only_normal = classification.diagnostic_scores(np.zeros(4, int), probs_of(np.array([0.1, 0.2, 0.3, 0.4])))
  assert np.isnan(only_normal['abnormal_auroc']) and np.isnan(only_normal['sensitivity_at_specificity_0.9'])


def test_ct_classify_test_recipe_trains_and_logs_the_diagnostic_figures(tmp_path):
  config = ct_classify.get_config('test')
  experiment.train_and_evaluate(config, workdir=str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  final = [r for r in rows if 'diagnosis/abnormal_auroc' in r][-1]
  assert final['step'] == config.num_steps
  keys = ['abnormal_auroc', 'abnormal_auprc', 'abnormal_prevalence', 'sensitivity_at_specificity_0.9',
          'sensitivity_at_specificity_0.95', 'auroc_ovr_0', 'auroc_ovr_macro', 'top_label_ece',
          'accuracy', 'balanced_accuracy']  # the older scalars keep their names
  for key in keys:
    assert 0.0 <= final[f'diagnosis/{key}'] <= 1.0, key
  assert final['diagnosis/log_loss'] > 0
  assert (tmp_path / 'diagnosis' / f'reliability_{config.num_steps:07d}.png').exists()
  text = (tmp_path / 'diagnosis' / f'diagnosis_{config.num_steps:07d}.txt').read_text()
  assert 'target specificity' in text and 'mean confidence' in text


def test_unknown_variant_names_the_variants():
  with pytest.raises(ValueError, match=', '.join(ct_classify.VARIANTS)):
    ct_classify.get_config('runlocl')
  dp = ct_classify.get_config('runlocal_dp')
  assert dp.privacy.enabled and dp.privacy.noise_multiplier == 1.0 and dp.batch_size == 256
  pgd = ct_classify.get_config('runlocal_pgd')
  assert pgd.task.adversarial.kind == 'pgd' and pgd.num_steps == ct_classify.get_config('runlocal').num_steps


def test_the_classifier_on_an_autoencoders_encoder_starts_from_a_trained_one_with_a_fresh_head(tmp_path):
  vae = ct_vae.get_config('test')   # as the latent-diffusion test trains it: one compile for both
  vae.mesh.num_devices = 1
  for ev in vae.evals.values():
    ev.every = 0
  experiment.train_and_evaluate(vae, str(tmp_path / 'vae'))
  c = ct_classify.get_config('test')
  c.evals = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({'name': 'vae_encoder_classifier', 'num_classes': 3})
  for key in ('channels', 'num_res_blocks', 'latent_channels', 'norm_groups'):
    c.model[key] = vae.model[key]
  c.init_from, c.init_parts = str(tmp_path / 'vae'), ml_collections.ConfigDict({'encoder': 'vae/encoder'})
  c.optim.learning_rate = 0.0       # nothing moves: the finished params are the loaded ones
  state = experiment.train_and_evaluate(c, str(tmp_path / 'cls'))
  _, vae_task, _, _, vae_data = experiment.load_run(str(tmp_path / 'vae'), with_data=True)
  trained = checkpoint.restore_params(str(tmp_path / 'vae'), {'params': experiment.abstract_params(vae_task, vae_data)})
  encoder = trained['params']['vae']['encoder']
  assert set(state.params) == {'encoder', 'cls_head'}
  assert set(state.params['encoder']) < set(encoder)    # all but the latent projection, which it does not use
  for name, part in state.params['encoder'].items():
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(part), jax.device_get(encoder[name]))
  assert np.abs(np.asarray(state.params['cls_head']['kernel'])).sum() > 0   # fresh, not zeros
  # A name this model lacks, a path the run lacks, and parts of another shape are refused by name.
  for parts, match in (({'decoder': 'vae/decoder'}, "names \\['decoder'\\]"),
                       ({'encoder': 'vae/encoderr'}, 'not there'),
                       ({'encoder': 'vae/decoder'}, 'not there|do not fit')):
    c.init_parts = ml_collections.ConfigDict(parts)
    with pytest.raises(checkpoint.CheckpointMismatch, match=match):
      experiment.train_and_evaluate(c, str(tmp_path / f'bad_{len(match)}'))
  c.model.channels = (16, 16)
  c.init_parts = ml_collections.ConfigDict({'encoder': 'vae/encoder'})
  with pytest.raises(checkpoint.CheckpointMismatch, match='do not fit'):
    experiment.train_and_evaluate(c, str(tmp_path / 'bad_shape'))


def test_the_classifier_on_a_diffusion_unets_encoder_reads_only_that_part_of_the_whole_tree(tmp_path):
  diffusion, _ = tiny_diffusion_run(str(tmp_path / 'ct'))
  c = ct_classify.get_config('test')
  c.evals = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({'name': 'unet_encoder_classifier', 'num_classes': 3})
  for key in ('channels', 'attention_levels', 'num_res_blocks', 'head_channels', 'norm_groups'):
    c.model[key] = diffusion.model[key]
  c.init_from, c.init_parts = str(tmp_path / 'ct'), ml_collections.ConfigDict({'unet': ''})
  c.optim.learning_rate = 0.0
  c.num_steps, c.checkpoint_every, c.mesh.num_devices = 1, 1, 1
  state = experiment.train_and_evaluate(c, str(tmp_path / 'cls'))
  _, task, _, _, data = experiment.load_run(str(tmp_path / 'ct'), with_data=True)
  raw = checkpoint.restore_params(str(tmp_path / 'ct'), {'params': experiment.abstract_params(task, data)})['params']
  assert set(state.params) == {'unet', 'cls_head'}
  # The down path and the middle, not the up path (which the encoder never creates) nor the output convolution.
  assert {'down0_res0', 'mid_res1', 'Dense_0'} <= set(state.params['unet']) < set(raw)
  assert not any(k.startswith('up') for k in state.params['unet'])
  for name, part in state.params['unet'].items():
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(part), jax.device_get(raw[name]))
  c.init_parts = ml_collections.ConfigDict({'unet': '', 'cls_head': 'Dense_0'})
  with pytest.raises(checkpoint.CheckpointMismatch, match='must be the only part named'):
    experiment.train_and_evaluate(c, str(tmp_path / 'two_parts'))

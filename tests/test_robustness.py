"""Adversarial robustness: FGSM/PGD against closed-form optima, the adversarial-training wrapper's losses, and
the robustness evaluator on a trained classifier."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aigc_jax import registry
from aigc_jax.core import evaluation
from aigc_jax.objectives import attacks
from aigc_jax.tasks import adversarial_training
from configs import ct_denoise
from configs import ct_features


def test_attacks_reach_the_closed_form_optimum_of_a_linear_loss_and_stay_in_the_ball():
  """For loss Σ w·x the best L∞ move is eps·sign(w), the best L2 move eps·w/‖w‖ (inside [-1, 1])."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(3, 4, 4, 1)), jnp.float32)
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (3, 4, 4, 1)), jnp.float32)
  loss = lambda xa: jnp.sum(w * xa)
  eps = 0.1
  np.testing.assert_allclose(attacks.fgsm(loss, x, eps=eps), x + eps * jnp.sign(w), atol=1e-6)
  np.testing.assert_allclose(attacks.pgd(loss, x, eps=eps, steps=10, rng=jax.random.PRNGKey(0)),
                             x + eps * jnp.sign(w), atol=1e-6)
  unit = w / jnp.sqrt(jnp.sum(w ** 2, axis=(1, 2, 3), keepdims=True))
  l2 = attacks.pgd(loss, x, eps=eps, norm='l2', steps=10, step_size=eps, rng=jax.random.PRNGKey(1))
  np.testing.assert_allclose(l2, x + eps * unit, atol=1e-4)
  assert np.all(np.sqrt(np.sum(np.square(l2 - x), axis=(1, 2, 3))) <= eps + 1e-6)
  edge = attacks.fgsm(loss, jnp.full_like(x, 0.98), eps=eps)  # the window clips: never past +1
  assert float(edge.max()) <= 1.0 and float(edge.min()) >= 0.88 - 1e-6
  assert attacks.pgd(loss, x, eps=0.0) is x
  assert attacks.window_units(10.0, -1000.0, 1000.0) == pytest.approx(0.01)
  with pytest.raises(ValueError, match="attack norm 'l1'"):
    attacks.pgd(loss, x, eps=eps, norm='l1')
  kl = attacks.kl_divergence(jnp.array([[1.0, 2.0, 0.0]]), jnp.array([[1.0, 2.0, 0.0]]))
  assert float(kl[0]) == pytest.approx(0.0, abs=1e-6)


def _classifier_config(kind=''):
  c = ct_features.get_config('test')
  c.task.input_noise = 0.0
  c.task.adversarial = ml_collections.ConfigDict({'kind': kind, 'eps_hu': 20.0, 'steps': 3, 'beta': 6.0})
  return c


def test_adversarial_training_raises_the_loss_it_trains_on():
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32),
           'lesion_kind': rng.integers(0, 3, 4).astype(np.int32), 'level': rng.uniform(0, 1, 4).astype(np.float32)}
  plain = registry.build_task(_classifier_config())
  params = plain.init(jax.random.PRNGKey(0), batch)
  key = jax.random.PRNGKey(2)
  clean, _ = plain.per_example_loss(params, batch, jax.random.split(key)[1])
  pgd = registry.build_task(_classifier_config('pgd'))
  assert isinstance(pgd, adversarial_training.AdversarialTraining)
  attacked, _ = pgd.per_example_loss(params, batch, key)
  assert np.all(np.asarray(attacked) > np.asarray(clean))  # the inner maximization found a worse input
  trades = registry.build_task(_classifier_config('trades'))
  total, metrics = trades.per_example_loss(params, batch, key)
  np.testing.assert_allclose(total, clean + 6.0 * metrics['trades_kl'], rtol=1e-5)
  assert np.all(np.asarray(metrics['trades_kl']) > 0)
  np.testing.assert_array_equal(trades.predict(params, batch), plain.predict(params, batch))
  with pytest.raises(ValueError, match="kind='fgsm'"):
    registry.build_task(_classifier_config('fgsm'))


def test_robustness_evaluator_scores_clean_and_attacked_held_out_slices():
  c = _classifier_config()
  c.evals = ml_collections.ConfigDict({'robust': {'type': 'robustness', 'every': 1, 'num': 12, 'batch': 8,
                                                  'linf_hu': (10.0, 40.0), 'l2_rms_hu': (10.0,), 'steps': 3}})
  task = registry.build_task(c)
  spec = registry.build_data(c).batch_spec(1)
  params = task.init(jax.random.PRNGKey(0), {k: np.zeros(v.shape, v.dtype) for k, v in spec.items()})
  ev = registry.build_evaluators(c, task)['robust']
  out = ev.run(params, jax.random.PRNGKey(0), evaluation.Context()).scalars
  names = {'clean', 'fgsm_linf10hu', 'fgsm_linf40hu', 'pgd_linf10hu', 'pgd_linf40hu', 'pgd_l2rms10hu'}
  assert {f'{n}_accuracy' for n in names} <= set(out)
  assert all(0.0 <= out[f'{n}_accuracy'] <= 1.0 for n in names)
  # PGD raises each slice's loss of its true class: it can take correct answers away, hardly give them.
  assert out['pgd_linf40hu_accuracy'] <= out['clean_accuracy'] + 1 / 12
  with pytest.raises(ValueError, match='take'):
    bad = c.copy_and_resolve_references()
    bad.evals.robust.epsilon = 3.0
    registry.build_evaluators(bad, task)


def test_restoration_robustness_measures_dose_shift_and_perturbation():
  c = ct_denoise.get_config('test')
  c.evals.shift = ml_collections.ConfigDict({'type': 'restoration_robustness', 'every': 0, 'num': 4, 'batch': 4,
                                             'steps': 2, 'dose_fractions': (0.1, 0.5, 1.0), 'linf_hu': (5.0, 10.0)})
  task = registry.build_task(c)
  data = registry.build_data(c)
  spec = data.batch_spec(1)
  params = task.init(jax.random.PRNGKey(0), {k: np.zeros(v.shape, v.dtype) for k, v in spec.items()})
  ev = registry.build_evaluators(c, task, data)['shift']
  out = ev.run(params, jax.random.PRNGKey(0), evaluation.Context()).scalars
  # The acquisition model at more dose gives a less noisy input: its PSNR rises with the dose fraction.
  assert out['dose0.1_psnr_input_db'] < out['dose0.5_psnr_input_db'] < out['dose1_psnr_input_db']
  assert out['dose0.1_gain_db'] == pytest.approx(out['dose0.1_psnr_db'] - out['dose0.1_psnr_input_db'])
  # The attack stays within 10 HU of the input and raises the restored error (or leaves it).
  assert out['pgd_linf10hu_psnr_db'] <= out['configured_dose_psnr_db'] + 1e-6
  assert out['pgd_linf10hu_psnr_input_db'] <= out['configured_dose_psnr_input_db'] + 0.5
  bad = c.copy_and_resolve_references()
  bad.data.name = 'tfds:mine'
  bad.data.data_dir = '/nonexistent'
  del bad.evals['restoration']  # (it would refuse the missing dataset first)
  with pytest.raises(ValueError, match='only the phantom'):
    registry.build_evaluators(bad, task, data)

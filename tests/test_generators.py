"""The other generator families on the one trainer: GAN, KL autoencoder and latent diffusion."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.objectives import adversarial
from aigc_jax.objectives import diffusion
from aigc_jax import evaluate
from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.tasks import autoencoder
from configs import ct_gan
from configs import ct_ldm
from configs import ct_vae
import inception_parity
import test_diffusion


def test_adversarial_losses_match_hand_computed_values():
  zeros = jnp.zeros(4)
  np.testing.assert_allclose(adversarial.discriminator_loss(zeros, zeros, 'non_saturating'), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(adversarial.generator_loss(zeros, 'non_saturating'), np.log(2), rtol=1e-6)
  real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.5])
  # hinge: mean(relu(1 - [2, .5])) + mean(relu(1 + [-2, .5])) = 0.25 + 0.75
  np.testing.assert_allclose(adversarial.discriminator_loss(real, fake, 'hinge'), 1.0, rtol=1e-6)
  np.testing.assert_allclose(adversarial.generator_loss(fake, 'hinge'), 0.75, rtol=1e-6)
  # A linear discriminator D(x) = <w, x> has ∇ₓD = w for every example: R1 = ‖w‖².
  w = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 4, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 4, 1))
  np.testing.assert_allclose(adversarial.r1_penalty(lambda v: jnp.sum(v * w, axis=(1, 2, 3)), x),
                             jnp.sum(w ** 2), rtol=1e-5)
  with pytest.raises(ValueError, match='gan_loss'):
    adversarial.check_loss('wasserstein')


def test_kl_divergence_of_gaussians():
  np.testing.assert_allclose(autoencoder.kl_divergence(jnp.zeros(3), jnp.zeros(3)), 0.0, atol=1e-7)
  # KL(N(1, e) ‖ N(0, 1)) = ½(1 + e − 1 − 1)
  np.testing.assert_allclose(autoencoder.kl_divergence(jnp.array(1.0), jnp.array(1.0)), 0.5 * (np.e - 1), rtol=1e-6)


def _one_device(c):
  # These tests are about the objectives; sharding over 8 devices is covered elsewhere and compiles slower.
  c.mesh.num_devices = 1
  return c


# For programs a test compiles to run once on tiny inputs: LLVM's optimizations cost seconds of compile there
# (the trainer's own init does the same) and change nothing the tests check.
_RUN_ONCE = {'xla_backend_optimization_level': 0}


def _no_evals(c):
  # For runs whose evaluator outputs a test does not read (the evaluators are checked on runs of their own:
  # a VAE's in test_vae_… and test_registry.py, ct_samples in the GAN and diffusion tests).
  for ev in c.evals.values():
    ev.every = 0
  return c


def _changed(before, after):
  return jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), before, after)


def test_gan_updates_both_networks_in_one_step_and_is_evaluated_by_the_harness(tmp_path):
  c = ct_gan.get_config('test')
  task = registry.build_task(c)
  batch = {'image': jax.random.uniform(jax.random.PRNGKey(0), (8, 16, 16, 1), minval=-1, maxval=1)}
  params = nn.meta.unbox(jax.jit(task.init, compiler_options=_RUN_ONCE)(jax.random.PRNGKey(1), batch))
  grads, metrics = jax.jit(task.grads, compiler_options=_RUN_ONCE)(params, batch, jax.random.PRNGKey(2))
  assert set(grads) == {'gen', 'disc'} and {'d_loss', 'g_loss', 'r1', 'loss'} <= set(metrics)
  for net in ('gen', 'disc'):
    assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads[net]))) > 0
  # The generator's gradient is that of L_G alone: the discriminator's loss does not leak into it.
  g_only = jax.jit(jax.grad(lambda g: adversarial.generator_loss(
      task._discriminate(params['disc'], task._generate(g, jax.random.normal(jax.random.PRNGKey(2), (8, 16)))),
      'non_saturating')), compiler_options=_RUN_ONCE)(params['gen'])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads['gen'], g_only)

  state = experiment.train_and_evaluate(_one_device(c), str(tmp_path))
  assert all(jax.tree.leaves(_changed(params, state.params)))  # untouched leaves would mean a dead network
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert any('train/d_loss' in r and 'train/g_loss' in r for r in rows)
  assert any('samples/hu_w1' in r for r in rows)
  weights = str(tmp_path / 'inception.npz')  # random weights: the plumbing of --inception, not its figures
  np.savez(weights, **inception_parity.random_state_dict())
  report = evaluate.evaluate(str(tmp_path), num=8, audit_train=16, batch=8, inception=weights)
  assert report['step'] == 4 and np.isfinite(report['realism']['hu_w1']['all'])
  assert report['inception']['network'].startswith('InceptionV3 (FID) inception.npz')
  assert np.isfinite(report['inception']['fid']) and report['inception']['fid'] != report['features']['fid']
  bad = ct_gan.get_config('test')
  bad.model.image_size = 32
  with pytest.raises(ValueError, match='image_size'):
    registry.build_task(bad)


def test_vae_with_its_adversarial_term_trains_and_reports_reconstruction(tmp_path):
  # (The plain VAE, adv_weight = 0, trains in the latent-diffusion test below.)
  c = ct_vae.get_config('test')
  c.task.adv_weight, c.task.r1_gamma = 0.1, 1.0
  state = experiment.train_and_evaluate(_one_device(c), str(tmp_path))
  assert set(state.params) == {'vae', 'disc'}
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert any('train/kl' in r and 'train/l1' in r and 'train/d_loss' in r and 'train/g_loss' in r for r in rows)
  assert any('reconstruction/psnr_db' in r for r in rows)
  report = evaluate.evaluate(str(tmp_path), num=8, audit_train=16, batch=8)
  rec = report['reconstruction']
  assert rec['psnr_db']['ci95'][0] <= rec['psnr_db']['mean'] <= rec['psnr_db']['ci95'][1]


def _ldm_config():
  # Without the sample evaluation: its outputs are not read here, and the test samples with `generate`.
  return _no_evals(_one_device(ct_ldm.get_config('test')))


def test_latent_diffusion_trains_on_frozen_scaled_latents_and_decodes_samples(tmp_path):
  vae_dir, ldm_dir = tmp_path / 'vae', tmp_path / 'ldm'
  experiment.train_and_evaluate(_no_evals(_one_device(ct_vae.get_config('test'))), str(vae_dir))
  c = _ldm_config()
  with pytest.raises(ValueError, match='autoencoder'):
    registry.build_task(c)  # no autoencoder named: the message says which run to train first
  c.task.autoencoder = str(vae_dir)
  task = registry.build_task(c)
  _, vae_task, vae_params, _ = experiment.load_run(str(vae_dir))
  images = jnp.asarray(next(iter(__import__('aigc_jax.data.pipeline', fromlist=['x']).make_dataset(
      c.data, batch_size=16, process_index=0, process_count=1)))['image'])
  mean, logvar = jax.jit(vae_task.encode, compiler_options=_RUN_ONCE)(vae_params, images)
  # The scale makes the latents the diffusion is trained on (posterior draws for the first training images,
  # 16 here: exactly those) unit-variance; another draw of the noise agrees to sampling error.
  state = experiment.train_and_evaluate(c, str(ldm_dir))
  ae = state.params['autoencoder']
  # The scale makes the latents the diffusion is trained on (posterior draws for the first training images,
  # 16 here: exactly those) unit-variance; another draw of the noise agrees to sampling error.
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.PRNGKey(123), mean.shape)
  np.testing.assert_allclose(float(jnp.std(z)) * float(ae['latent_scale']), 1.0, rtol=0.06)
  # Sampling leaves the latents unclipped: the exact denoiser of unit-variance data gives back unit variance.
  assert task.bounded is False
  # (On the setting, cosine / DDIM-100 / η = 1: the test variant's 50 timesteps are too coarse.)
  task.schedule, task.sample_steps, task.ddim_eta = diffusion.make_schedule('cosine', 1000), 100, 1.0
  free = np.asarray(task.draw(test_diffusion.unit_gaussian_oracle(task.schedule, task.prediction),
                              jax.random.PRNGKey(0), (2048, 4)))
  np.testing.assert_allclose(free.std(), 1.0, atol=0.03)
  rows = [json.loads(line) for line in open(vae_dir / 'metrics.jsonl')]
  assert any('train/kl' in r for r in rows) and not any('train/d_loss' in r for r in rows)  # the plain VAE
  # The autoencoder is a frozen subtree of the run's state: its weights are the VAE run's step-4 EMA weights,
  # untouched by 4 steps of training, and it holds no optimizer state (only the denoiser's Adam moments).
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ae['vae']), jax.device_get(vae_params['vae']))
  assert int(ae['step']) == 4 and experiment.load_run(str(ldm_dir))[0].task.autoencoder_step == 4
  opt_size = sum(x.size for x in jax.tree.leaves(state.opt_state))
  denoiser_size = sum(x.size for x in jax.tree.leaves(state.params['denoiser']))
  assert opt_size < 2 * denoiser_size + 100, (opt_size, denoiser_size)
  hu, step, _ = experiment.generate(str(ldm_dir), num=4, batch=8)
  assert step == 4 and hu.shape == (4, 16, 16) and hu.min() >= -1000 and hu.max() <= 1000
  # Continuing the autoencoder run changes nothing in the finished LDM: its decoder lives in its checkpoint.
  longer = _no_evals(_one_device(ct_vae.get_config('test')))
  longer.num_steps = 6
  experiment.train_and_evaluate(longer, str(vae_dir))
  np.testing.assert_array_equal(experiment.generate(str(ldm_dir), num=4, batch=8)[0], hu)
  # A rerun naming another autoencoder step is refused, with the step the checkpoint holds.
  again = _ldm_config()
  again.task.autoencoder, again.task.autoencoder_step = str(vae_dir), 6
  with pytest.raises(ValueError, match='holds the autoencoder of step 4'):
    experiment.train_and_evaluate(again, str(ldm_dir))
  other = ct_ldm.get_config('test')
  other.task.autoencoder = str(vae_dir)
  other.data.image_size = 32
  with pytest.raises(ValueError, match='image_size'):
    registry.build_task(other)

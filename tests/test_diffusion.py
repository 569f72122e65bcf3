"""Samplers checked where the answer is known: Gaussian data, whose exact ε-predictor is closed-form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import diffusion

DATA_STD = 0.5


def _oracle_eps(schedule):
  """For x0 ~ N(0, s²): x_t ~ N(0, ᾱs² + 1 − ᾱ) and E[ε | x_t] = sqrt(1 − ᾱ) x_t / (ᾱs² + 1 − ᾱ)."""
  def eps_fn(x, t):
    a = schedule.alphas_cumprod[t][:, None]
    return jnp.sqrt(1 - a) * x / (a * DATA_STD ** 2 + 1 - a)
  return eps_fn


@pytest.mark.parametrize('kind', ['linear', 'cosine'])
def test_schedule_is_a_valid_noising_process(kind):
  s = diffusion.make_schedule(kind, 1000)
  a = np.asarray(s.alphas_cumprod)
  assert a.shape == (1000,) and np.all(np.diff(a) < 0)
  assert 0.99 < a[0] < 1.0 and a[-1] < 1e-3  # starts near clean data, ends near pure noise
  np.testing.assert_allclose(a, np.cumprod(1 - np.asarray(s.betas, np.float64)), rtol=1e-4)


def test_unknown_schedule_names_the_field():
  with pytest.raises(ValueError, match='config.task.schedule'):
    diffusion.make_schedule('quadratic', 10)


def test_q_sample_mixes_signal_and_noise_by_alpha_bar():
  s = diffusion.make_schedule('linear', 100)
  x0, noise = jnp.full((2, 3), 2.0), jnp.full((2, 3), -1.0)
  t = jnp.array([0, 99])
  xt = diffusion.q_sample(s, x0, t, noise)
  a = np.asarray(s.alphas_cumprod)[[0, 99]][:, None]
  np.testing.assert_allclose(xt, np.broadcast_to(np.sqrt(a) * 2.0 - np.sqrt(1 - a), (2, 3)), rtol=1e-6)


def test_eps_loss_is_zero_for_a_perfect_predictor_and_one_for_zero():
  s = diffusion.make_schedule('cosine', 50)
  x0 = jnp.zeros((4, 8))
  # x0 = 0 ⇒ x_t = sqrt(1 − ᾱ) ε, so ε is recovered exactly from x_t.
  perfect = lambda x, t: x / jnp.sqrt(1 - s.alphas_cumprod[t])[:, None]
  assert float(jnp.max(diffusion.eps_loss(perfect, s, x0, jax.random.PRNGKey(0)))) < 1e-8
  zero = lambda x, t: jnp.zeros_like(x)
  np.testing.assert_allclose(float(jnp.mean(diffusion.eps_loss(zero, s, jnp.zeros((512, 64)), jax.random.PRNGKey(1)))),
                             1.0, atol=0.02)


def _std(x):
  return float(np.asarray(x).std())


def test_ddim_eta0_recovers_gaussian_data_and_converges_with_steps():
  s = diffusion.make_schedule('linear', 200)
  key, shape = jax.random.PRNGKey(0), (2048, 4)
  sample = lambda n: diffusion.ddim_sample(_oracle_eps(s), s, key, shape, num_steps=n, clip_x0=False)
  full, coarse = sample(200), sample(20)
  # 8192 draws: the sample std's standard error is about 0.5/sqrt(2*8192) = 0.004.
  assert abs(float(np.asarray(full).mean())) < 0.02
  np.testing.assert_allclose(_std(full), DATA_STD, atol=0.01)
  # Fewer steps: the deterministic ODE solver's discretization error shows and is larger.
  assert abs(_std(coarse) - DATA_STD) > 2 * abs(_std(full) - DATA_STD)


@pytest.mark.parametrize('sampler', ['ddim_eta1', 'ddpm'])
def test_ancestral_samplers_recover_gaussian_data(sampler):
  s = diffusion.make_schedule('linear', 200)
  key, shape = jax.random.PRNGKey(0), (2048, 4)
  if sampler == 'ddpm':
    x = diffusion.ddpm_sample(_oracle_eps(s), s, key, shape, clip_x0=False)
  else:
    x = diffusion.ddim_sample(_oracle_eps(s), s, key, shape, num_steps=200, eta=1.0, clip_x0=False)
  assert abs(float(np.asarray(x).mean())) < 0.02
  # Posterior variance β̃_t is the lower of Ho et al.'s two choices: with T = 200 it ends ~4% narrow.
  np.testing.assert_allclose(_std(x), DATA_STD, atol=0.03)


def test_ddim_eta1_over_all_steps_is_ddpm():
  s = diffusion.make_schedule('cosine', 30)
  a = diffusion.ddim_sample(_oracle_eps(s), s, jax.random.PRNGKey(5), (8, 3), num_steps=30, eta=1.0, clip_x0=False)
  b = diffusion.ddpm_sample(_oracle_eps(s), s, jax.random.PRNGKey(5), (8, 3), clip_x0=False)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_the_key():
  s = diffusion.make_schedule('cosine', 100)
  a = diffusion.ddim_sample(_oracle_eps(s), s, jax.random.PRNGKey(3), (4, 2), num_steps=10)
  b = diffusion.ddim_sample(_oracle_eps(s), s, jax.random.PRNGKey(3), (4, 2), num_steps=10)
  np.testing.assert_array_equal(a, b)
  assert np.all(np.abs(np.asarray(a)) <= 1.0)  # clipped to the data range by default

"""Samplers checked where the answer is known: Gaussian data, whose exact ε-predictor is closed-form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax.objectives import diffusion
from aigc_jax.objectives import flow
from aigc_jax import registry
from aigc_jax.tasks import diffusion as task_lib
from tiny_config import tiny_config

DATA_STD = 0.5


def _oracle(schedule, prediction):
  """The exact E[target | x_t] for x0 ~ N(0, s²), for each prediction target."""
  def fn(x, t):
    a = schedule.alphas_cumprod[t][:, None]
    var = a * DATA_STD ** 2 + 1 - a
    eps, x0 = jnp.sqrt(1 - a) * x / var, jnp.sqrt(a) * DATA_STD ** 2 * x / var
    return {'eps': eps, 'x0': x0, 'v': jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0}[prediction]
  return fn


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


def test_losses_at_a_chosen_timestep_are_the_objective_at_that_step():
  s = diffusion.make_schedule('linear', 100)
  x0 = jax.random.normal(jax.random.PRNGKey(2), (3, 8))
  rng = jax.random.PRNGKey(3)
  seen = []
  identity = lambda x, t: seen.append(t) or x  # the "model" returns x_t, whose error to ε depends on t
  noise = jax.random.normal(jax.random.split(rng)[1], x0.shape)  # the loss's own noise draw
  for t in (0, 37, 99):
    a = s.alphas_cumprod[t]
    want = jnp.mean(jnp.square(jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * noise - noise), axis=1)
    np.testing.assert_allclose(diffusion.loss(identity, s, x0, rng, t=t), want, rtol=1e-6)
    assert np.all(np.asarray(seen[-1]) == t) and seen[-1].shape == (3,)
  # Flow: x_t = (1 − t) x0 + t ε against the velocity ε − x0; the model is told t on the 0…999 scale.
  np.testing.assert_allclose(flow.loss(lambda x, t: seen.append(t) or x, x0, rng, 0.25),
                             jnp.mean(jnp.square(0.75 * x0 + 0.25 * noise - (noise - x0)), axis=1), rtol=1e-6)
  np.testing.assert_allclose(seen[-1], 0.25 * flow.TIME_SCALE)


def _std(x):
  return float(np.asarray(x).std())


def test_ddim_eta0_recovers_gaussian_data_and_converges_with_steps():
  s = diffusion.make_schedule('linear', 200)
  key, shape = jax.random.PRNGKey(0), (2048, 4)
  sample = lambda n: diffusion.ddim_sample(_oracle(s, 'eps'), s, key, shape, num_steps=n, clip_x0=False)
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
    x = diffusion.ddpm_sample(_oracle(s, 'eps'), s, key, shape, clip_x0=False)
  else:
    x = diffusion.ddim_sample(_oracle(s, 'eps'), s, key, shape, num_steps=200, eta=1.0, clip_x0=False)
  assert abs(float(np.asarray(x).mean())) < 0.02
  # Posterior variance β̃_t is the lower of Ho et al.'s two choices: with T = 200 it ends ~4% narrow.
  np.testing.assert_allclose(_std(x), DATA_STD, atol=0.03)


def test_ddim_eta1_over_all_steps_is_ddpm():
  s = diffusion.make_schedule('cosine', 30)
  a = diffusion.ddim_sample(_oracle(s, 'eps'), s, jax.random.PRNGKey(5), (8, 3), num_steps=30, eta=1.0, clip_x0=False)
  b = diffusion.ddpm_sample(_oracle(s, 'eps'), s, jax.random.PRNGKey(5), (8, 3), clip_x0=False)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_the_key():
  s = diffusion.make_schedule('cosine', 100)
  a = diffusion.ddim_sample(_oracle(s, 'eps'), s, jax.random.PRNGKey(3), (4, 2), num_steps=10)
  b = diffusion.ddim_sample(_oracle(s, 'eps'), s, jax.random.PRNGKey(3), (4, 2), num_steps=10)
  np.testing.assert_array_equal(a, b)
  assert np.all(np.abs(np.asarray(a)) <= 1.0)  # clipped to the data range by default


@pytest.mark.parametrize('prediction', ['x0', 'v'])
def test_x0_and_v_predictions_give_the_same_chain_as_eps(prediction):
  s = diffusion.make_schedule('cosine', 100)
  key, shape = jax.random.PRNGKey(2), (256, 4)
  ref = diffusion.ddim_sample(_oracle(s, 'eps'), s, key, shape, num_steps=20, eta=1.0, clip_x0=False)
  got = diffusion.ddim_sample(_oracle(s, prediction), s, key, shape, num_steps=20, eta=1.0, clip_x0=False,
                              prediction=prediction)
  np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)


def test_loss_targets_are_what_each_prediction_means():
  s = diffusion.make_schedule('linear', 50)
  x0 = jax.random.normal(jax.random.PRNGKey(0), (64, 8)) * DATA_STD
  for prediction in diffusion.PREDICTIONS:
    # Predicting the target exactly is possible only when it is a function of x_t: feed the truth back
    # through a closure over the same draws the loss makes.
    t_rng, n_rng = jax.random.split(jax.random.PRNGKey(7))
    t = jax.random.randint(t_rng, (64,), 0, 50)
    noise = jax.random.normal(n_rng, x0.shape)
    truth = diffusion.target(prediction, x0, noise, s.alphas_cumprod[t][:, None])
    exact = lambda x, tt, truth=truth: truth
    assert float(jnp.max(diffusion.loss(exact, s, x0, jax.random.PRNGKey(7), prediction=prediction))) < 1e-10
  with pytest.raises(ValueError, match='prediction'):
    diffusion.check_prediction('score', s)


def test_zero_terminal_snr_schedule_with_v_prediction_and_trailing_steps_recovers_gaussian_data():
  s = diffusion.make_schedule('linear', 200, zero_terminal_snr=True)
  a = np.asarray(s.alphas_cumprod)
  ref = np.asarray(diffusion.make_schedule('linear', 200).alphas_cumprod)
  assert a[-1] == 0.0 and abs(a[0] - ref[0]) < 1e-6 and np.all(np.diff(a) < 0)
  with pytest.raises(ValueError, match='zero-terminal-SNR'):
    diffusion.check_prediction('eps', s)
  ts = diffusion.timesteps(200, 10, 'trailing')
  assert ts[0] == 199 and len(ts) == 10 and np.all(np.diff(ts) < 0)
  x = diffusion.ddim_sample(_oracle(s, 'v'), s, jax.random.PRNGKey(0), (2048, 4), num_steps=200,
                            clip_x0=False, prediction='v', spacing='trailing')
  assert abs(float(np.asarray(x).mean())) < 0.02
  np.testing.assert_allclose(_std(x), DATA_STD, atol=0.01)


def _flow_oracle(x, t):
  """For x0 ~ N(0, s²): E[ε − x0 | x_t] = (t − (1 − t) s²) x_t / ((1 − t)² s² + t²)."""
  t = (t / flow.TIME_SCALE)[:, None]
  return (t - (1 - t) * DATA_STD ** 2) * x / ((1 - t) ** 2 * DATA_STD ** 2 + t ** 2)


def test_flow_matching_euler_and_heun_recover_gaussian_data():
  key, shape = jax.random.PRNGKey(0), (4096, 2)
  fine = flow.sample(_flow_oracle, key, shape, num_steps=200, clip=False)
  np.testing.assert_allclose(_std(fine), DATA_STD, atol=0.01)
  euler = flow.sample(_flow_oracle, key, shape, num_steps=8, clip=False)
  heun = flow.sample(_flow_oracle, key, shape, num_steps=4, method='heun', clip=False)  # same 8 model calls
  assert abs(_std(heun) - DATA_STD) < abs(_std(euler) - DATA_STD)  # second order wins
  assert abs(_std(heun) - DATA_STD) < 0.02


def test_flow_loss_is_zero_for_the_exact_velocity():
  x0 = jnp.zeros((16, 4))  # x0 = 0 ⇒ x_t = t ε, so the velocity ε − x0 = x_t / t is a function of x_t
  exact = lambda x, t: x / (t / flow.TIME_SCALE)[:, None]
  assert float(jnp.max(flow.loss(exact, x0, jax.random.PRNGKey(0)))) < 1e-8


def test_guidance_mixes_conditional_and_unconditional_outputs():
  apply = lambda x, t, y: x + 10.0 * y[:, None]  # the "model": its output shows the label it was given
  x, t, y = jnp.ones((3, 2)), jnp.zeros((3,)), jnp.array([1, 2, 0])
  cond, uncond = apply(x, t, y), apply(x, t, jnp.full((3,), 5))
  np.testing.assert_allclose(task_lib.guided(apply, x, t, y, 5, 1.0), cond)
  np.testing.assert_allclose(task_lib.guided(apply, x, t, y, 5, 0.0), uncond)
  np.testing.assert_allclose(task_lib.guided(apply, x, t, y, 5, 3.0), uncond + 3.0 * (cond - uncond))
  dropped = task_lib.drop_labels(jnp.zeros((10_000,), jnp.int32), jax.random.PRNGKey(0), 0.1, 7)
  assert 0.08 < float(jnp.mean(dropped == 7)) < 0.12 and set(np.unique(dropped).tolist()) == {0, 7}


def test_conditional_flow_task_trains_and_samples_with_guidance():
  # Each program runs once on a tiny batch: LLVM's optimizations would cost most of the test's time in
  # compiles (the trainer's own init is compiled so too) and change nothing checked here; so would a second
  # U-Net level (the task, not the network, is under test).
  jit = lambda f: jax.jit(f, compiler_options={'xla_backend_optimization_level': 0})
  c = tiny_config(**{'task.objective': 'flow', 'task.sampler': 'heun', 'task.sample_steps': 2,
                     'task.condition_on': 'lesion', 'model.num_classes': 2, 'task.guidance': 2.0,
                     'data.labels': ('lesion',), 'model.channels': (8,), 'model.attention_levels': (False,)})
  task = registry.build_task(c)
  batch = {'image': jnp.zeros((4, 16, 16, 1)), 'lesion': jnp.array([0, 1, 0, 1], jnp.int32)}
  params = jit(task.init)(jax.random.PRNGKey(0), batch)
  assert params['class_embed']['embedding'].shape[0] == 3  # two classes and the "no label" token
  loss, grads = jit(jax.value_and_grad(lambda p: task.loss(p, batch, jax.random.PRNGKey(1))[0]))(params)
  assert np.isfinite(float(loss)) and float(optax.global_norm(grads)) > 0
  x = jit(lambda p: task.sample(p, jax.random.PRNGKey(2), (4, 16, 16, 1), labels=jnp.array([0, 1, 0, 1])))(params)
  assert x.shape == (4, 16, 16, 1) and float(jnp.max(jnp.abs(x))) <= 1.0
  with pytest.raises(ValueError, match='data.labels'):
    registry.build_task(tiny_config(**{'task.condition_on': 'lesion', 'model.num_classes': 2}))
  with pytest.raises(ValueError, match='does not sample'):
    registry.build_task(tiny_config(**{'task.objective': 'flow'}))  # ddim is not a flow sampler
  with pytest.raises(ValueError, match='"v" or "x0"'):
    registry.build_task(tiny_config(**{'task.zero_terminal_snr': True}))


@pytest.mark.parametrize('T', [50, 1000])
@pytest.mark.parametrize('spacing', ['leading', 'trailing'])
def test_timesteps_give_n_distinct_valid_steps_for_every_n(T, spacing):
  for n in range(1, T + 1):
    ts = diffusion.timesteps(T, n, spacing)
    assert len(ts) == n and ts.min() >= 0 and ts.max() <= T - 1 and np.all(np.diff(ts) < 0), (n, ts[:4], ts[-4:])
    if spacing == 'trailing':
      assert ts[0] == T - 1
  if spacing == 'trailing' and T == 1000:  # diffusers' trailing spacing, halves rounded to even (62.5 -> 62)
    np.testing.assert_array_equal(diffusion.timesteps(T, 16, spacing)[::-1],
                                  np.round(np.arange(T, 0, -T / 16))[::-1] - 1)
    assert list(diffusion.timesteps(T, 16, spacing)[-3:]) == [187, 124, 61]


def test_conditioning_fields_that_would_sample_untrained_embeddings_are_refused():
  with pytest.raises(ValueError, match='condition_on is empty'):
    registry.build_task(tiny_config(**{'model.num_classes': 2}))
  with pytest.raises(ValueError, match='cond_dropout'):
    registry.build_task(tiny_config(**{'task.condition_on': 'lesion', 'model.num_classes': 2, 'data.labels': ('lesion',),
                               'task.cond_dropout': 0.0, 'task.guidance': 3.0}))
  with pytest.raises(ValueError, match='needs a conditional model'):
    registry.build_task(tiny_config(**{'task.guidance': 2.0}))
  # Conditional sampling without guidance needs no unconditional embedding: allowed.
  registry.build_task(tiny_config(**{'task.condition_on': 'lesion', 'model.num_classes': 2, 'data.labels': ('lesion',),
                             'task.cond_dropout': 0.0}))


def unit_gaussian_oracle(schedule, prediction):
  """The exact E[target | x_t] for x0 ~ N(0, 1): unit-variance data such as latent diffusion's latents."""
  def fn(x, t):
    a = schedule.alphas_cumprod[t].reshape((-1,) + (1,) * (x.ndim - 1))
    eps, x0 = jnp.sqrt(1 - a) * x, jnp.sqrt(a) * x  # var(x_t) = a + (1 − a) = 1
    return {'eps': eps, 'x0': x0, 'v': jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0}[prediction]
  return fn


def test_pixel_space_tasks_clip_and_draws_of_unbounded_spaces_keep_their_spread():
  task = registry.build_task(tiny_config(**{'task.schedule': 'cosine', 'task.timesteps': 1000}))
  task.sample_steps, task.ddim_eta = 100, 1.0
  oracle, shape = unit_gaussian_oracle(task.schedule, task.prediction), (2048, 4)
  pixels = np.asarray(task.draw(oracle, jax.random.PRNGKey(0), shape))
  assert task.bounded and np.abs(pixels).max() <= 1.0  # pixel space: samples stay in the window
  task.bounded = False
  free = np.asarray(task.draw(oracle, jax.random.PRNGKey(0), shape))
  np.testing.assert_allclose(free.std(), 1.0, atol=0.03)
  assert 0.25 < np.mean(np.abs(free) > 1.0) < 0.37  # N(0, 1): 31.7% beyond ±1

"""DP-SGD: the private gradient against a hand loop, its noise, the accountant against published settings,
Poisson sampling as served, and a private run through the one trainer."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pydicom
import pytest

from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.core import train
from aigc_jax.data import pipeline
from aigc_jax.data import serving
from aigc_jax.imaging import export
from aigc_jax.core.privacy import accountant
from aigc_jax.core.privacy import dp_sgd
from aigc_jax.core.privacy import sampling
from aigc_jax.tasks import classification
from configs import ct_features
from configs import ct_gan


class NoisyRegression:
  """A per-example loss that draws from its key (like diffusion's timesteps), with a second, frozen, subtree."""

  def per_example_loss(self, params, batch, rng):
    jitter = jax.random.normal(rng, batch['y'].shape)
    pred = batch['x'] @ params['w']['kernel'] + params['w']['bias'] + params['frozen']['b'] + 0.1 * jitter
    err = jnp.square(pred - batch['y'])
    return err, {'err': err}


def _regression(rows=8, seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 4)
  params = {'w': {'kernel': jax.random.normal(k[0], (3,)), 'bias': jnp.zeros(())},
            'frozen': {'b': jnp.ones(())}}
  batch = {'x': 3.0 * jax.random.normal(k[1], (rows, 3)), 'y': jax.random.normal(k[2], (rows,))}
  return params, batch


def test_private_gradient_equals_a_hand_loop_over_examples():
  """Clip each drawn example's gradient to C, sum, add σC noise with the fixed key, divide by the expected
  batch; padding rows and the frozen subtree add nothing."""
  task = NoisyRegression()
  params, batch = _regression()
  weights = jnp.array([1, 1, 0, 1, 1, 0, 1, 1], jnp.float32)
  trainable = {'w': {'kernel': True, 'bias': True}, 'frozen': {'b': False}}
  rng, clip, sigma, expected = jax.random.PRNGKey(3), 47.0, 0.7, 5  # clips 3 of the 6 drawn rows
  got, metrics = dp_sgd.private_grads(params, {**batch, sampling.WEIGHT_KEY: weights}, rng, task=task,
                                      clip_norm=clip, noise_multiplier=sigma, expected_batch=expected,
                                      trainable=trainable)
  loss_key, noise_key = jax.random.split(rng)
  keys = jax.random.split(loss_key, 8)
  total = jax.tree.map(jnp.zeros_like, params['w'])
  clipped = 0
  for i in range(8):
    if not weights[i]:
      continue
    one = {k: v[i:i + 1] for k, v in batch.items()}
    g = jax.grad(lambda w: task.per_example_loss({**params, 'w': w}, one, keys[i])[0][0])(params['w'])
    norm = float(optax.global_norm(g))
    clipped += norm > clip
    total = jax.tree.map(lambda t, x: t + x * min(1.0, clip / norm), total, g)
  # Noise per leaf in flattening order of the whole tree: frozen/b, w/bias, w/kernel.
  nk = jax.random.split(noise_key, 3)
  want = {'bias': (total['bias'] + sigma * clip * jax.random.normal(nk[1], ())) / expected,
          'kernel': (total['kernel'] + sigma * clip * jax.random.normal(nk[2], (3,))) / expected}
  np.testing.assert_allclose(got['w']['kernel'], want['kernel'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got['w']['bias'], want['bias'], rtol=1e-5, atol=1e-6)
  assert float(got['frozen']['b']) == 0.0
  assert float(metrics["dp_examples"]) == 6 and clipped == 3
  assert float(metrics['dp_clipped_fraction']) == pytest.approx(clipped / 6)


def test_without_noise_or_clipping_it_is_the_ordinary_gradient_of_a_real_task():
  """σ = 0, C = ∞, every row drawn, divided by the batch: the gradient of the mean loss (the classification
  task without input noise: its loss does not draw from the key), in one chunk or in four."""
  c = ct_features.get_config('test')
  c.task.input_noise = 0.0
  task = classification.ClassificationTask(c)
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32),
           'lesion_kind': rng.integers(0, 3, 8).astype(np.int32),
           'level': rng.uniform(0, 1, 8).astype(np.float32)}
  params = task.init(jax.random.PRNGKey(0), batch)
  want = jax.grad(lambda p: task.loss(p, batch, jax.random.PRNGKey(1))[0])(params)
  full = {**batch, sampling.WEIGHT_KEY: np.ones(8, np.float32)}
  for chunks in (1, 4):
    got, metrics = jax.jit(lambda p, b, k, m=chunks: dp_sgd.private_grads(
        p, b, k, task=task, clip_norm=math.inf, noise_multiplier=0.0, expected_batch=8, microbatches=m))(
            params, full, jax.random.PRNGKey(1))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6), got, want)
    assert float(metrics['dp_clipped_fraction']) == 0.0
    assert float(metrics['loss']) == pytest.approx(float(task.loss(params, batch, jax.random.PRNGKey(1))[0]),
                                                   rel=1e-5)
  with pytest.raises(ValueError, match='microbatches=3'):
    dp_sgd.private_grads(params, full, jax.random.PRNGKey(1), task=task, clip_norm=1.0,
                         noise_multiplier=0.0, expected_batch=8, microbatches=3)


def test_noise_has_std_sigma_c_over_the_batch_and_padding_cannot_poison_the_sum():
  class Zero:  # d/dw = log(x): 0 on the drawn rows (x = 1), nan and -inf on the padding rows (x = -1, 0)
    def per_example_loss(self, params, batch, rng):
      del rng
      return jnp.sum(params['w']) * jnp.log(batch['x']), {}
  params = {'w': jnp.zeros((200, 100))}
  batch = {'x': jnp.array([1.0, 1.0, -1.0, 0.0]), sampling.WEIGHT_KEY: jnp.array([1.0, 1.0, 0.0, 0.0])}
  grads, metrics = dp_sgd.private_grads(params, batch, jax.random.PRNGKey(0), task=Zero(), clip_norm=2.0,
                                        noise_multiplier=1.5, expected_batch=4)
  g = np.asarray(grads['w'])
  # A product with the weight would give nan · 0 = nan here: the padding rows must be selected away.
  assert np.all(np.isfinite(g)) and np.isfinite(float(metrics['loss']))
  # 20,000 draws: the sample std is within 3 % of σC/B = 0.75 with probability > 0.9999.
  assert g.std() == pytest.approx(1.5 * 2.0 / 4, rel=0.03) and abs(g.mean()) < 0.02


OPACUS_RDP_EPSILON = 8.177  # see test_accountant_matches_published_settings


def test_accountant_matches_published_settings():
  """De et al. 2022 (jax_privacy's cifar10_wrn_16_4_eps1): N = 50,000, batch 4,096, σ = 10, 875 steps give
  ε = 1 at δ = 1e-5 by RDP; the PLD accountant is tighter; σ calibrated for ε = 1 lands near 10."""
  q = 4096 / 50_000
  rdp = accountant.epsilon(q, 10.0, 875, 1e-5, 'rdp')
  assert 0.95 < rdp <= 1.0
  assert accountant.epsilon(q, 10.0, 875, 1e-5, 'pld') < rdp
  sigma = accountant.noise_for_epsilon(1.0, q, 875, 1e-5)
  assert 9.5 < sigma <= 10.0 and accountant.epsilon(q, sigma, 875, 1e-5) <= 1.0 + 1e-3
  assert accountant.epsilon(q, 10.0, 0, 1e-5) == 0.0 and accountant.epsilon(q, 0.0, 5, 1e-5) == math.inf
  # Opacus 1.5.4's RDPAccountant on ct_classify runlocal_dp's setting (q = 256 / 4,096, σ = 1, 300 steps,
  # δ = 1e-5), as benchmarks/opacus_peer.py printed it (opacus_rdp_epsilon; PyTorch is no dependency of ours):
  # the same bound over a different grid of orders, so it agrees to the third digit, not exactly.
  assert accountant.epsilon(256 / 4096, 1.0, 300, 1e-5, 'rdp') == pytest.approx(OPACUS_RDP_EPSILON, abs=0.01)


def _privacy_config(**fields):
  c = ml_collections.ConfigDict({'batch_size': 64, 'num_steps': 1000, 'privacy': {
      'enabled': True, 'clip_norm': 1.0, 'noise_multiplier': 1.0, 'target_epsilon': 0.0, 'delta': 1e-5,
      'accountant': 'rdp', 'epsilon_budget': 0.0, 'microbatches': 1}})
  for k, v in fields.items():
    c.privacy[k] = v
  return c


def test_plan_pads_to_a_capacity_it_rarely_exceeds_and_refuses_what_it_cannot_promise():
  plan = accountant.make_plan(_privacy_config(), num_examples=10_000, multiple=8)
  assert plan.rate == 64 / 10_000 and plan.capacity % 8 == 0 and 64 + 4 * 8 < plan.capacity <= 2 * 64
  # At most 1 % of δ, and the capacity is the fewest rows that keep it so (8 fewer would not).
  assert plan.overflow <= 1e-7 < accountant.overflow_probability(10_000, plan.rate, plan.capacity - 8, 1000)
  assert plan.record()['delta_total'] == pytest.approx(1e-5 + plan.overflow)
  assert plan.record()['epsilon'] == pytest.approx(accountant.epsilon(plan.rate, 1.0, 1000, 1e-5))
  calibrated = accountant.make_plan(_privacy_config(noise_multiplier=0.0, target_epsilon=3.0),
                                    num_examples=10_000, multiple=8)
  assert calibrated.epsilon(1000) == pytest.approx(3.0, rel=1e-2)
  with pytest.raises(ValueError, match=r'epsilon_budget=2 is less than the ε=.*raise noise_multiplier'):
    accountant.make_plan(_privacy_config(epsilon_budget=2.0, noise_multiplier=0.6), num_examples=10_000,
                         multiple=8)
  with pytest.raises(ValueError, match=r'delta=0.001: it must be in \(0, 1/N\)'):
    accountant.make_plan(_privacy_config(delta=1e-3), num_examples=10_000, multiple=8)
  with pytest.raises(ValueError, match='both noise_multiplier and target_epsilon'):
    accountant.make_plan(_privacy_config(target_epsilon=2.0), num_examples=10_000, multiple=8)
  with pytest.raises(ValueError, match='needs noise'):
    accountant.make_plan(_privacy_config(noise_multiplier=0.0), num_examples=10_000, multiple=8)
  with pytest.raises(ValueError, match="accountant='moments'"):
    accountant.make_plan(_privacy_config(accountant='moments'), num_examples=10_000, multiple=8)


def test_poisson_batches_include_each_example_with_probability_q_whatever_the_process_count():
  n, q, cap = 200, 0.1, 40
  poisson = sampling.Poisson(q, cap, seed=5)

  class Source(serving.RowsSource):  # a data source of rows, as the text and tabular ones are
    config = ml_collections.ConfigDict({'split': 'train', 'shuffle': True, 'seed': 0, 'num_threads': 2,
                                        'prefetch': 2, 'num_workers': 0})

    def rows(self, split):
      return {'i': np.arange(n)}
  source = Source()
  assert source.num_train() == n
  it = iter(source.make_dataset(batch_size=cap, process_index=0, process_count=1, poisson=poisson))
  steps = 400
  counts, sizes = np.zeros(n), []
  first = []
  for t in range(steps):
    b = next(it)
    w = b[sampling.WEIGHT_KEY]
    drawn = b['i'][w > 0]
    assert w.shape == (cap,) and np.all(w[:len(drawn)] == 1) and len(set(drawn)) == len(drawn)
    np.testing.assert_array_equal(np.sort(drawn), np.sort(poisson.draw(t, n)))
    counts[drawn] += 1
    sizes.append(len(drawn))
    if t < 3:
      first.append(b)
  # Each example's count is Binomial(400, 0.1): mean 40, sd 6; over 200 examples the mean is within 4 sd/√200,
  # the sample variance (36, sd ≈ 3.6) within 3 of its sds, and no example far out (a bias toward some indices).
  assert abs(counts.mean() - steps * q) < 4 * 6 / math.sqrt(n)
  assert 25 < counts.var(ddof=1) < 47 and 15 < counts.min() and counts.max() < 65
  assert np.std(sizes) > 2 and abs(np.mean(sizes) - n * q) < 1.0  # a variable batch: Binomial(200, 0.1)
  saved = it.get_state()
  nxt = next(it)
  it2 = iter(source.make_dataset(batch_size=cap, process_index=0, process_count=1, poisson=poisson))
  it2.set_state(saved)  # a resumed run draws exactly what the uninterrupted one did
  np.testing.assert_array_equal(next(it2)['i'], nxt['i'])
  halves = [iter(source.make_dataset(batch_size=cap, process_index=p, process_count=2, poisson=poisson))
            for p in range(2)]
  for t in range(3):
    parts = [next(h) for h in halves]
    for key in ('i', sampling.WEIGHT_KEY):
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), first[t][key])


def test_private_run_through_the_trainer_logs_epsilon_and_refuses_what_it_cannot_cover(tmp_path):
  c = ct_features.get_config('test')
  c.num_steps, c.log_every, c.checkpoint_every, c.batch_size = 4, 2, 4, 8
  c.data.num_train = 128
  c.privacy.enabled, c.privacy.noise_multiplier, c.privacy.delta = True, 1.0, 1e-3
  c.evals = ml_collections.ConfigDict()
  experiment.train_and_evaluate(c, str(tmp_path / 'dp'))
  record = json.loads((tmp_path / 'dp' / 'privacy.json').read_text())
  assert record['rate'] == 8 / 128 and record['capacity'] % 8 == 0 and record['steps'] == 4
  rows = [json.loads(line) for line in open(tmp_path / 'dp' / 'metrics.jsonl')]
  eps = {r['step']: r['privacy/epsilon'] for r in rows if 'privacy/epsilon' in r}
  assert set(eps) == {2, 4} and 0 < eps[2] < eps[4] == pytest.approx(record['epsilon'])
  assert eps[2] == pytest.approx(accountant.epsilon(8 / 128, 1.0, 2, 1e-3))
  assert all(0 < r['train/dp_examples'] <= record['capacity'] for r in rows if 'train/dp_examples' in r)
  # What exported images and `evaluate` carry: the (ε, δ) of the parameters at their step.
  line = export.provenance(str(tmp_path / 'dp'), 2, c.to_json_best_effort())
  assert f'DP-SGD: ({eps[2]:.3g}, ' in line and 'sigma=1,' in line
  files = export.write_dicom_series(np.zeros((1, 8, 8)), str(tmp_path / 'dicom'), pixel_mm=1.0, description=line)
  assert f'({eps[2]:.3g}, ' in str(pydicom.dcmread(files[0]).ImageComments)
  assert 'DP-SGD' not in export.provenance(str(tmp_path / 'nowhere'), 2, c.to_json_best_effort())

  # The run's seed is a secret kept beside it (mode 0600), not config.seed; the audit's members follow from it.
  secret = tmp_path / 'dp' / accountant.SECRET
  assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600
  drawn = pipeline.trained_indices(str(tmp_path / 'dp'), c, 4)
  poisson = sampling.Poisson(record['rate'], record['capacity'], int(secret.read_text()))
  np.testing.assert_array_equal(drawn, np.unique(np.concatenate([poisson.draw(t, 128) for t in range(4)])))
  public = sampling.Poisson(record['rate'], record['capacity'], c.seed)  # what config.json would give away
  assert not all(np.array_equal(public.draw(t, 128), poisson.draw(t, 128)) for t in range(4))
  again = c.copy_and_resolve_references()
  again.num_steps, again.privacy.noise_multiplier = 6, 2.0
  with pytest.raises(ValueError, match='earlier steps ran with noise_multiplier=1.0'):
    experiment.train_and_evaluate(again, str(tmp_path / 'dp'))  # resuming with another mechanism

  budget = c.copy_and_resolve_references()
  budget.privacy.epsilon_budget = 0.5
  with pytest.raises(ValueError, match='epsilon_budget=0.5 is less than'):
    experiment.train_and_evaluate(budget, str(tmp_path / 'over'))
  assert not (tmp_path / 'over' / 'config.json').exists()  # refused before anything ran or was written


def test_a_task_without_per_example_loss_is_refused():
  c = ct_gan.get_config('test')
  c.privacy.enabled, c.privacy.noise_multiplier = True, 1.0
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ('data', 'fsdp', 'tensor'))
  with pytest.raises(ValueError, match="task 'gan' has no per-example loss"):
    train.privacy_plan(c, registry.build_task(c), registry.build_data(c), mesh)

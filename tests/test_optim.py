import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import ml_collections

from aigc_jax.core import optim


def _params():
  return {
      'dense': {'kernel': jnp.array([[1.0, -2.0], [0.5, 3.0]]), 'bias': jnp.array([0.25, -0.5])},
      'norm': {'scale': jnp.array([1.0, 2.0])},
  }


def _grads():
  return {
      'dense': {'kernel': jnp.array([[0.1, 0.2], [-0.3, 0.4]]), 'bias': jnp.array([1.0, -1.0])},
      'norm': {'scale': jnp.array([0.5, 0.5])},
  }


def test_sgd_step_equals_the_formula_exactly():
  eta, lam = 0.1, 0.01
  tx = optax.chain(optax.sgd(eta), optim.decoupled_weight_decay(lam, eta, mask=optim.decay_mask))
  params, grads = _params(), _grads()
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  # θ ← θ − η∇L − ηλθ on the kernel; biases and normalization scales get the plain SGD step.
  k, gk = np.asarray(params['dense']['kernel']), np.asarray(grads['dense']['kernel'])
  eta32, lam32 = np.float32(eta), np.float32(lam)
  # The update is exactly −η∇L − ηλθ in float32; adding it to θ rounds once more (≤ 1 ulp from float64).
  np.testing.assert_array_equal(updates['dense']['kernel'], -eta32 * gk - eta32 * lam32 * k)
  np.testing.assert_allclose(new['dense']['kernel'], k - eta * gk - eta * lam * k, rtol=2e-7)
  np.testing.assert_allclose(new['dense']['bias'], params['dense']['bias'] - eta * grads['dense']['bias'], rtol=1e-7)
  np.testing.assert_allclose(new['norm']['scale'], params['norm']['scale'] - eta * grads['norm']['scale'], rtol=1e-7)


def test_decay_follows_the_learning_rate_schedule():
  schedule = optax.linear_schedule(1.0, 0.0, 4)  # η = 1, 0.75, 0.5, ...
  tx = optax.chain(optax.sgd(0.0), optim.decoupled_weight_decay(0.1, schedule))
  params = {'w': jnp.ones((2, 2))}
  state = tx.init(params)
  shrink = []
  for _ in range(3):
    updates, state = tx.update({'w': jnp.zeros((2, 2))}, state, params)
    shrink.append(float(updates['w'][0, 0]))
  np.testing.assert_allclose(shrink, [-0.1, -0.075, -0.05], rtol=1e-6)


def test_adam_plus_decay_matches_optax_adamw():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10)
  ours = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(schedule),
                     optim.decoupled_weight_decay(0.05, schedule, mask=optim.decay_mask))
  ref = optax.adamw(schedule, weight_decay=0.05, mask=optim.decay_mask)
  p_ours = p_ref = _params()
  s_ours, s_ref = ours.init(p_ours), ref.init(p_ref)
  for i in range(6):
    g = jax.tree.map(lambda x: x * (1.0 + 0.3 * i) - 0.1 * i, _grads())
    u, s_ours = ours.update(g, s_ours, p_ours)
    p_ours = optax.apply_updates(p_ours, u)
    u, s_ref = ref.update(g, s_ref, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), p_ours, p_ref)
  # And decay really acted: without it the kernel ends elsewhere.
  plain = optax.adam(schedule)
  p, s = _params(), plain.init(_params())
  for i in range(6):
    u, s = plain.update(jax.tree.map(lambda x: x * (1.0 + 0.3 * i) - 0.1 * i, _grads()), s, p)
    p = optax.apply_updates(p, u)
  assert not np.allclose(p['dense']['kernel'], p_ours['dense']['kernel'], rtol=1e-7, atol=0)


def test_decay_needs_params():
  tx = optim.decoupled_weight_decay(0.1, 0.1)
  with pytest.raises(ValueError, match='needs params'):
    tx.update({'w': jnp.ones(2)}, tx.init({'w': jnp.ones(2)}))


def _optim_config(**kw):
  c = ml_collections.ConfigDict(dict(name='adam', learning_rate=1e-3, warmup_steps=10, end_lr_factor=0.1,
                                     weight_decay=0.01, grad_clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8,
                                     momentum=0.9, ema_decay=0.0))
  c.update(kw)
  return c


def test_schedule_warms_up_then_decays_to_end_factor():
  _, schedule = optim.make_optimizer(_optim_config(), num_steps=100)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(100)), 1e-4, rtol=1e-5)


def test_unknown_optimizer_names_the_field():
  with pytest.raises(ValueError, match='config.optim.name.*scale_by_adamm'):
    optim.make_optimizer(_optim_config(name='adamm'), num_steps=10)


def test_any_optax_direction_by_name_matches_optax():
  """name='lion' is optax.scale_by_lion with the config's b1, b2: the same updates as optax.lion."""
  params = {'w': jnp.arange(4.0).reshape(2, 2)}
  cfg = _optim_config(name='lion', b1=0.9, b2=0.99, warmup_steps=0, end_lr_factor=1.0, weight_decay=0.0,
                      grad_clip_norm=0.0, learning_rate=0.01)
  ours, _ = optim.make_optimizer(cfg, num_steps=10)
  ref = optax.lion(0.01, b1=0.9, b2=0.99, weight_decay=0.0)  # ours decays in its own transformation
  s1, s2 = ours.init(params), ref.init(params)
  for i in range(3):
    g = jax.tree.map(lambda p, i=i: jnp.sin(p + i), params)
    u1, s1 = ours.update(g, s1, params)
    u2, s2 = ref.update(g, s2, params)
    np.testing.assert_allclose(u1['w'], u2['w'], rtol=1e-6)
  cfg.extra = ml_collections.ConfigDict({'nesterov': True})
  with pytest.raises(ValueError, match='nesterov'):
    optim.make_optimizer(cfg, num_steps=10)  # a keyword scale_by_lion does not take: named


def test_frozen_paths_get_no_update_and_no_state():
  params = {'enc': {'w': jnp.ones((2, 2)), 'b': jnp.ones(2)}, 'dec': {'w': jnp.ones((2, 2))}}
  cfg = _optim_config(warmup_steps=0, end_lr_factor=1.0, learning_rate=0.1)
  cfg.frozen = ('enc',)
  tx, _ = optim.make_optimizer(cfg, num_steps=10, params=params)
  state = tx.init(params)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates['enc']))
  assert float(jnp.abs(updates['dec']['w']).max()) > 0
  # Adam's two moments exist for 'dec' only: the frozen subtree holds no optimizer state.
  state_leaves = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))
  assert state_leaves < 3 * 4 + 10, state_leaves
  sub, _ = optim.make_optimizer(cfg, num_steps=10, params=params, frozen=('dec/w',))  # a task's own, added
  u, _ = sub.update(jax.tree.map(jnp.ones_like, params), sub.init(params), params)
  assert float(jnp.abs(u['dec']['w']).max()) == 0
  cfg.frozen = ('encoder',)
  with pytest.raises(ValueError, match="frozen names 'encoder'"):
    optim.make_optimizer(cfg, num_steps=10, params=params)  # a typo would silently train everything


def test_groups_give_each_network_its_own_optimizer():
  params = {'gen': {'w': jnp.ones((2, 2))}, 'disc': {'w': jnp.ones((2, 2))}, 'other': jnp.ones((3,))}
  grads = jax.tree.map(jnp.ones_like, params)
  cfg = _optim_config(name='sgd', momentum=0.0, warmup_steps=0, end_lr_factor=1.0, weight_decay=0.0,
                      grad_clip_norm=0.0, learning_rate=0.1)
  cfg.groups = ml_collections.ConfigDict({'disc': {'learning_rate': 0.5}, 'gen': {'learning_rate': 0.0}})
  tx, _ = optim.make_optimizer(cfg, num_steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['disc']['w'], -0.5)   # its own learning rate
  np.testing.assert_allclose(updates['gen']['w'], 0.0)
  np.testing.assert_allclose(updates['other'], -0.1)       # not named: the shared fields
  cfg.groups = ml_collections.ConfigDict({'disc': {'learning_rat': 0.5}})
  with pytest.raises(ValueError, match='groups.disc.learning_rat'):
    optim.make_optimizer(cfg, num_steps=10)


class _ConstantGradTask:
  """grads = 1 everywhere: with SGD at learning rate 1 the params move by exactly −1 per step."""

  def grads(self, params, batch, rng):
    return jax.tree.map(jnp.ones_like, params), {}


def test_ema_warms_up_before_reaching_its_decay():
  from aigc_jax.core import train  # pylint: disable=g-import-not-at-top
  from aigc_jax.core import train_state  # pylint: disable=g-import-not-at-top
  tx = optax.sgd(1.0)
  state = train_state.create({'w': jnp.zeros(3)}, tx, jax.random.PRNGKey(0))
  step = jax.jit(lambda s: train.train_step(s, {}, task=_ConstantGradTask(), tx=tx,
                                            lr_schedule=lambda t: 1.0, ema_decay=0.9999)[0])
  ema = 0.0
  for t in range(30):
    state = step(state)
    d = min(0.9999, (1 + t) / (10 + t))  # the warm-up: follows the params early, the decay only later
    ema = d * ema + (1 - d) * -(t + 1.0)
    np.testing.assert_allclose(state.ema_params['w'], ema, rtol=1e-5)
  # Without a warm-up the EMA would still be ~100% the initial zeros (0.9999^30): it has moved most of the way.
  assert float(state.ema_params['w'][0]) < -15.0
  np.testing.assert_allclose(float(train_state.ema_decay_at(10 ** 6, 0.9999)), 0.9999, rtol=1e-6)

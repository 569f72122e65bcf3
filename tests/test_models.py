import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aigc_jax import models
from aigc_jax.models import norm
from aigc_jax.models import layers
from aigc_jax.models import unet


def _init(m, x, t):
  # Jitted at low backend optimization: eager init compiles every random op on its own (~25 s on 2 cores).
  return jax.jit(m.init, compiler_options={'xla_backend_optimization_level': 0})(jax.random.PRNGKey(0), x, t)


def _tiny(**kw):
  args = dict(channels=(8, 16), attention_levels=(False, True), num_res_blocks=1, head_channels=8, norm_groups=4)
  args.update(kw)
  return unet.UNet(**args)


def test_unet_maps_images_to_same_shape_and_starts_at_zero():
  m = _tiny()
  x, t = jnp.ones((2, 16, 16, 1)), jnp.array([3, 7])
  params = _init(m, x, t)
  out = m.apply(params, x, t)
  assert out.shape == (2, 16, 16, 1) and out.dtype == jnp.float32
  # Output conv is zero-initialised (DDPM practice), so an untrained model predicts ε̂ = 0.
  np.testing.assert_array_equal(out, 0.0)


def test_unet_depends_on_time_and_input_after_a_perturbation():
  m = _tiny()
  x, t = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1)), jnp.array([3, 3])
  params = _init(m, x, t)
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  apply = jax.jit(m.apply)
  a = apply(params, x, t)
  assert not np.allclose(a, apply(params, x, jnp.array([900, 900])))
  assert not np.allclose(a, apply(params, x * 0.5, t))


def test_bf16_compute_keeps_float32_params_and_output():
  m = _tiny(dtype='bfloat16')
  x, t = jnp.ones((1, 16, 16, 1)), jnp.array([1])
  params = _init(m, x, t)
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  assert m.apply(params, x, t).dtype == jnp.float32


def test_remat_gives_the_same_gradients():
  x, t = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1)), jnp.array([3, 5])
  plain, remat = _tiny(), _tiny(remat=True)
  params = _init(plain, x, t)
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  g = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x, t) ** 2))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g(plain), g(remat))


def test_attention_levels_must_match_channels():
  with pytest.raises(ValueError, match='one bool per level'):
    _init(_tiny(attention_levels=(True,)), jnp.ones((1, 16, 16, 1)), jnp.array([0]))


def test_build_names_bad_model_and_bad_field():
  with pytest.raises(ValueError, match='config.model.name'):
    models.build(ml_collections.ConfigDict({'name': 'vit'}))
  with pytest.raises(ValueError, match='does not take'):
    models.build(ml_collections.ConfigDict({'name': 'unet', 'chanels': (8,)}))


def test_group_norm_is_flaxs_group_norm():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 16)) * 3.0 + 1.5
  ours, ref = norm.GroupNorm(4), nn.GroupNorm(4)
  params = ref.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(ours.init(jax.random.PRNGKey(1), x)) == jax.tree.structure(params)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda m: jax.grad(lambda p, x: jnp.sum(nn.silu(m.apply(p, x)) * jnp.cos(x)), argnums=(0, 1))(params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), loss(ours), loss(ref))
  assert norm.GroupNorm(4, dtype=jnp.bfloat16).apply(params, x).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match='norm_groups'):
    norm.GroupNorm(5).init(jax.random.PRNGKey(1), x)


def test_attention_implementations_agree():
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (4, 12, 2, 8)) for i in range(3))
  ref = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(8.0), axis=-1)
  ref = jnp.einsum('bhqk,bkhd->bqhd', ref, v)
  for impl in layers.ATTENTION:
    np.testing.assert_allclose(layers.attend(q, k, v, impl), ref, rtol=1e-5, atol=1e-6)
  for per_pass in (1, 2, 3):  # 3 does not divide the batch: one pass
    np.testing.assert_allclose(layers.attend(q, k, v, 'einsum', per_pass), ref, rtol=1e-5, atol=1e-6)
  # In the U-Net: 'auto' at inference on CPU loops over pairs of images; the same output as plain einsum.
  x, t = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1)), jnp.array([3, 5, 7, 9])
  params = _init(_tiny(), x, t)
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  outs = [jax.jit(_tiny(attention=a).apply)(params, x, t) for a in ('auto', 'einsum')]
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='config.model.attention'):
    layers.attend(q, k, v, 'flash')

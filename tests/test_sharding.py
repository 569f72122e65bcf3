"""Parameters placed by logical axis names and the rules in the config; optimizer state follows them."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import pytest

from aigc_jax import registry
from aigc_jax import models
from aigc_jax.core import optim
from aigc_jax.core import sharding
from aigc_jax.core import train_state
from tiny_config import tiny_config


def _mesh(**axes):
  c = tiny_config(**{f'mesh.{k}': v for k, v in axes.items()})
  return sharding.make_mesh(c.mesh), c.mesh


def test_rules_map_logical_axes_to_mesh_axes_where_they_divide():
  mesh, cfg = _mesh(data=2, fsdp=2, tensor=2, fsdp_min_size=0)
  assert dict(mesh.shape) == {'data': 2, 'fsdp': 2, 'tensor': 2}
  conv = (None, None, 'conv_in', 'conv_out')
  assert sharding.logical_spec(conv, (3, 3, 16, 32), mesh, cfg) == P(None, None, 'tensor', 'fsdp')
  assert sharding.logical_spec(conv, (3, 3, 1, 32), mesh, cfg) == P(None, None, None, 'fsdp')  # 1 ∤ 2
  assert sharding.logical_spec(('embed', 'heads', 'kv'), (64, 4, 16), mesh, cfg) == P('fsdp', 'tensor', None)
  assert sharding.logical_spec((), (64,), mesh, cfg) == P()  # no names (a bias): replicated
  cfg.fsdp_min_size = 10_000
  assert sharding.logical_spec(conv, (3, 3, 16, 32), mesh, cfg) == P()  # small: replicated
  cfg.rules = (('conv_in', None), ('conv_out', 'tensor'))
  cfg.fsdp_min_size = 0
  assert sharding.logical_spec(conv, (3, 3, 16, 32), mesh, cfg) == P(None, None, None, 'tensor')
  with pytest.raises(ValueError, match="'embed'"):
    sharding.logical_spec(('embed', 'heads', 'kv'), (64, 4, 16), mesh, cfg)
  with pytest.raises(ValueError, match='tensor=3'):
    _mesh(data=2, fsdp=1, tensor=3)


def test_every_unet_kernel_is_named_and_adam_moments_follow_their_parameters():
  c = tiny_config(**{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2, 'mesh.fsdp_min_size': 0,
                     'optim.weight_decay': 0.1})
  model = models.build(c.model)
  boxed = jax.eval_shape(lambda k: model.init({'params': k}, jnp.zeros((1, 16, 16, 1)), jnp.zeros((1,), jnp.int32)),
                         jax.random.PRNGKey(0))['params']
  logical = nn.get_partition_spec(boxed)
  params = nn.meta.unbox(boxed)
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    names = dict(jax.tree_util.tree_leaves_with_path(logical, is_leaf=lambda v: isinstance(v, P)))[path]
    is_kernel = path[-1].key == 'kernel'
    assert (len(names) == x.ndim) if is_kernel else (names == P()), (path, names)  # every kernel is named
  tx, _ = optim.make_optimizer(c.optim, 10)
  abstract = jax.eval_shape(lambda p: train_state.create(p, tx, jax.random.PRNGKey(0)), params)
  mesh = sharding.make_mesh(c.mesh)
  sh = sharding.state_shardings(abstract, logical, tx, mesh, c.mesh)
  kernel = sh.params['down1_res0']['Conv_0']['kernel']
  assert kernel.spec == P(None, None, 'tensor', 'fsdp')
  adam = sh.opt_state[1]
  assert adam.mu['down1_res0']['Conv_0']['kernel'] == kernel == sh.ema_params['down1_res0']['Conv_0']['kernel']
  assert adam.nu['down1_attn0']['query']['kernel'].spec == P('fsdp', 'tensor', None)
  assert adam.count.spec == P() and sh.step.spec == P() and sh.rng.spec == P()


def test_per_network_optimizer_state_follows_its_parameters():
  from configs import ct_gan  # pylint: disable=g-import-not-at-top
  from aigc_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  c = ct_gan.get_config('test')
  c.mesh.fsdp, c.mesh.fsdp_min_size = 2, 0
  mesh = sharding.make_mesh(c.mesh)
  task = registry.build_task(c)
  tx, _ = optim.make_optimizer(c.optim, c.num_steps)
  spec = pipeline.batch_spec(c.data, c.batch_size)
  key = jax.random.PRNGKey(0)
  abstract = jax.eval_shape(lambda k: train_state.create(nn.meta.unbox(task.init(k, spec)), tx, k), key)
  logical = nn.get_partition_spec(jax.eval_shape(task.init, key, spec))
  shards = sharding.state_shardings(abstract, logical, tx, mesh, c.mesh)
  kernel = shards.params['gen']['Conv_1']['kernel']
  assert kernel.spec == P(None, None, None, 'fsdp')  # 16 → 8 channels: output over fsdp
  found = []
  for path, sh in jax.tree_util.tree_leaves_with_path(shards.opt_state):
    if jax.tree_util.keystr(path).endswith("['gen']['Conv_1']['kernel']"):
      found.append(sh.spec)
  assert found == [kernel.spec, kernel.spec]  # Adam's mu and nu in the gen group

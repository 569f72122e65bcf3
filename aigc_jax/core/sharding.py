"""The device mesh and where every array lives on it.

Mesh axes are ('data', 'fsdp', 'tensor'). The batch is split over data and fsdp (those devices see
different examples; the devices along 'tensor' share theirs). Parameters are placed by name, not by shape:
models name each kernel's dimensions with logical axes (`nn.with_logical_partitioning`: a conv kernel is
(None, None, 'conv_in', 'conv_out'), attention's query (embed, heads, kv)), and `config.mesh.rules` maps
each logical axis to a mesh axis or None. Mapping to 'fsdp' gives ZeRO-3-style sharding (XLA gathers the
kernel for the forward pass and reduce-scatters its gradient); mapping to 'tensor' gives Megatron-style
tensor parallelism. A dimension stays whole when its mesh axis has size 1, is already used by another
dimension of the array, or does not divide it; arrays below `fsdp_min_size` elements and arrays without
names (biases, norm scales) are replicated. The EMA and the optimizer's moments follow their parameters.
"""

import jax
import ml_collections
import numpy as np
import optax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')


def make_mesh(config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """The mesh for `config.mesh`: `num_devices` devices (-1: all) as a data x fsdp x tensor grid (-1: fill)."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices) if config.num_devices == -1 else config.num_devices
  if not 1 <= n <= len(devices):
    raise ValueError(f'config.mesh.num_devices={config.num_devices} but {len(devices)} devices are visible.')
  devices = devices[:n]
  shape = [config.data, config.fsdp, config.tensor]
  described = f'data={config.data} x fsdp={config.fsdp} x tensor={config.tensor}'
  if shape.count(-1) > 1:
    raise ValueError('config.mesh: at most one of data, fsdp, tensor may be -1.')
  known = int(np.prod([s for s in shape if s != -1]))
  if n % known:
    raise ValueError(f'config.mesh {described} does not divide {n} devices.')
  shape = [n // known if s == -1 else s for s in shape]
  if int(np.prod(shape)) != n:
    raise ValueError(f'config.mesh {described} != {n} devices; set one axis to -1.')
  try:
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, AssertionError, NotImplementedError):
    grid = np.asarray(devices).reshape(shape)  # e.g. a subset of a TPU slice: plain order still works
  return Mesh(grid, AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every data-parallel axis."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_spec(names: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh,
                 config: ml_collections.ConfigDict) -> P:
  """Mesh PartitionSpec for one array whose dimensions carry logical `names` (see the module doc)."""
  if not names or int(np.prod(shape, dtype=np.int64)) < config.fsdp_min_size:
    return P()
  rules = dict(config.rules)
  out, used = [], set()
  for dim, name in zip(shape, names):
    if name is not None and name not in rules:
      raise ValueError(f'The model names an axis {name!r} that config.mesh.rules does not map; add '
                       f'({name!r}, None) to replicate it or ({name!r}, "fsdp") to shard it.')
    axis = rules.get(name) if name is not None else None
    if axis is None or axis in used or mesh.shape[axis] == 1 or dim % mesh.shape[axis]:
      out.append(None)
    else:
      out.append(axis)
      used.add(axis)
  return P(*out)


def state_shardings(abstract_state, logical_params, tx: optax.GradientTransformation, mesh: Mesh,
                    config: ml_collections.ConfigDict):
  """NamedShardings for a TrainState: params and EMA by their logical names, the optimizer's per-parameter
  state (Adam's moments) like its parameter, everything else (step, counts, RNG) replicated.

  Args:
    abstract_state: the unboxed TrainState of ShapeDtypeStructs.
    logical_params: `nn.get_partition_spec` of the boxed params (None where a leaf has no names).
    tx: the optimizer that made `abstract_state.opt_state`.
    mesh, config: the mesh and `config.mesh`.
  """
  params = jax.tree.map(
      lambda names, x: NamedSharding(mesh, logical_spec(tuple(names or ()), tuple(x.shape), mesh, config)),
      logical_params, abstract_state.params, is_leaf=lambda x: x is None or isinstance(x, P))
  repl = replicated(mesh)
  opt = _like_params(abstract_state.opt_state, abstract_state.params, params, repl)
  return abstract_state.replace(step=repl, params=params, opt_state=opt, ema_params=params, rng=repl)


def _like_params(opt_state, abstract_params, param_shardings, default):
  """Each optimizer-state leaf whose key path ends in a parameter's path and that has its shape (Adam's
  moments, momentum) takes that parameter's sharding; counts and the rest take `default`.

  Matching paths rather than `optax.tree_map_params`, which cannot follow `optax.multi_transform`'s masked
  states (the per-network optimizers of a GAN).
  """
  key = jax.tree_util.keystr
  shapes = {key(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(abstract_params)}
  by_path = {key(p): sh for p, sh in jax.tree_util.tree_leaves_with_path(param_shardings)}

  def pick(path, leaf):
    for k in range(len(path)):
      name = key(path[k:])
      if name in by_path and shapes[name] == leaf.shape:
        return by_path[name]
    return default

  return jax.tree_util.tree_map_with_path(pick, opt_state)


def check_batch(batch_size: int, mesh: Mesh) -> None:
  n = mesh.shape['data'] * mesh.shape['fsdp']
  if batch_size % n:
    raise ValueError(f'batch_size={batch_size} must be divisible by the {n} data-parallel devices '
                     f'(mesh data={mesh.shape["data"]} x fsdp={mesh.shape["fsdp"]}).')


def make_global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Per-process numpy batches → global arrays laid out by `sharding` (no gather through one host)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}

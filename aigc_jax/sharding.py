"""The device mesh and where every array lives on it.

Mesh axes are ('data', 'fsdp'). The batch is split over both (every device sees different examples);
parameters and optimizer state are replicated, except that with fsdp > 1 each large array is split along
its largest dimension divisible by the fsdp size (ZeRO-3 style: XLA gathers it for the forward pass and
reduce-scatters its gradient). The rule is shape-based, so it covers params, EMA and Adam moments alike.
"""

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ('data', 'fsdp')
BATCH_AXES = ('data', 'fsdp')


def make_mesh(config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """The mesh for `config.mesh`: `num_devices` devices (-1: all) as a data x fsdp grid (-1: fill)."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices) if config.num_devices == -1 else config.num_devices
  if not 1 <= n <= len(devices):
    raise ValueError(f'config.mesh.num_devices={config.num_devices} but {len(devices)} devices are visible.')
  devices = devices[:n]
  shape = [config.data, config.fsdp]
  if shape.count(-1) > 1:
    raise ValueError('config.mesh: at most one of data, fsdp may be -1.')
  known = int(np.prod([s for s in shape if s != -1]))
  if n % known:
    raise ValueError(f'config.mesh data={config.data} x fsdp={config.fsdp} does not divide {n} devices.')
  shape = [n // known if s == -1 else s for s in shape]
  if int(np.prod(shape)) != n:
    raise ValueError(f'config.mesh data={shape[0]} x fsdp={shape[1]} != {n} devices; set one axis to -1.')
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


def array_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
  """PartitionSpec for one parameter-like array under the FSDP rule."""
  if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp == 0:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def tree_shardings(abstract_tree, mesh: Mesh, config: ml_collections.ConfigDict):
  """A NamedSharding for every leaf of a tree of arrays / ShapeDtypeStructs (e.g. the train state)."""
  fsdp = mesh.shape['fsdp']
  return jax.tree.map(
      lambda x: NamedSharding(mesh, array_spec(tuple(x.shape), fsdp, config.fsdp_min_size)), abstract_tree)


def check_batch(batch_size: int, mesh: Mesh) -> None:
  n = mesh.shape['data'] * mesh.shape['fsdp']
  if batch_size % n:
    raise ValueError(f'batch_size={batch_size} must be divisible by the {n} data-parallel devices '
                     f'(mesh data={mesh.shape["data"]} x fsdp={mesh.shape["fsdp"]}).')

"""The grain input pipeline: source → shuffle → window → this process's rows of each batch → global arrays.

Each process reads only its own `batch_size // process_count` rows of every global batch, and
`make_global_batch` stitches the per-process parts into one global `jax.Array` sharded over the mesh's
data axes. The iterator's state is saved with each checkpoint, so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

import grain
import jax
import ml_collections
import numpy as np

from aigc_jax.data import phantom


def make_source(config: ml_collections.ConfigDict):
  """The random-access source named by `config.data.name`."""
  if config.name == 'phantom_ct':
    return phantom.PhantomCT(seed=config.seed, size=config.image_size, num_examples=config.num_train)
  raise ValueError(f'config.data.name={config.name!r} is not a data source; use "phantom_ct".')


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps Hounsfield units in [lo, hi] linearly onto [-1, 1], clipping outside."""
  return (np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def unwindow(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Inverse of `window` (within the window): [-1, 1] back to Hounsfield units."""
  return (np.asarray(x, np.float32) + 1.0) / 2.0 * (hi - lo) + lo


def _to_example(config: ml_collections.ConfigDict):
  def fn(ex):
    return {'image': window(ex['hu'], config.window_lo, config.window_hi)[..., None]}
  return fn


def _random_hflip(ex: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
  if rng.random() < 0.5:
    return {**ex, 'image': np.ascontiguousarray(ex['image'][:, ::-1])}
  return ex


def make_dataset(config: ml_collections.ConfigDict, *, batch_size: int, process_index: int,
                 process_count: int) -> grain.IterDataset:
  """This process's infinite iterator of batches {'image': [batch_size/process_count, H, W, 1]}.

  Args:
    config: `config.data`.
    batch_size: the global batch size.
    process_index, process_count: this process's place among the JAX processes.
  """
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} is not divisible by the {process_count} processes.')
  local = batch_size // process_count
  ds = grain.MapDataset.source(make_source(config))
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed)  # the same permutation on every process
  ds = ds.repeat(None)  # reshuffled differently each epoch, deterministically
  ds = ds.map(_to_example(config))
  if config.hflip:
    ds = ds.random_map(_random_hflip, seed=config.seed)  # keyed by example index: same on any process count
  # Global batch k is rows [k*B, (k+1)*B) of the stream, whatever the process count; process p takes the
  # p-th of its P slices. Lazy: a process reads only its own examples, and the global batch (hence the
  # run) does not change when the same job runs on more or fewer processes.
  ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
  read = grain.ReadOptions(num_threads=config.num_threads, prefetch_buffer_size=config.prefetch)
  return ds.to_iter_dataset(read)


def make_global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Per-process numpy batches → global arrays laid out by `sharding` (no gather through one host)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def batch_spec(config: ml_collections.ConfigDict, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of one global batch, from one example (for init and ahead-of-time compiles)."""
  example = _to_example(config)(make_source(config)[0])
  return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype) for k, v in example.items()}

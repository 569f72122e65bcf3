"""The grain input pipeline: source → shuffle → window → augment → this process's rows of each batch → global
arrays.

Sources (`config.data.name`): 'phantom_ct', the built-in procedural CT (with `pairs=True`, low-/full-dose
pairs from the acquisition model), or 'tfds:NAME', a dataset written by `aigc_jax.data.prepare` and read
without TensorFlow from `config.data.data_dir`. Batches hold 'image' (the windowed scan, [-1, 1]),
'low_dose' for pairs, and the label keys listed in `config.data.labels`.

Each process reads only its own `batch_size // process_count` rows of every global batch, and
`make_global_batch` stitches the per-process parts into one global `jax.Array` sharded over the mesh's
data axes. The iterator's state is saved with each checkpoint, so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

import time

from absl import flags
import grain
import jax
import ml_collections
import numpy as np
from scipy import ndimage

from aigc_jax.data import geometry
from aigc_jax.data import phantom
from aigc_jax.data import records


def make_source(config: ml_collections.ConfigDict):
  """The random-access source named by `config.data.name`."""
  if config.name == 'phantom_ct':
    dose = (config.low_photons, config.full_photons, config.fov_mm) if config.pairs else None
    return phantom.PhantomCT(seed=config.seed, size=config.image_size, num_examples=config.num_train,
                             lesion_prob=config.lesion_prob, dose=dose)
  if config.name.startswith('tfds:'):
    if not config.data_dir:
      raise ValueError(f'config.data.name={config.name!r} needs --config.data.data_dir=<the --output given '
                       'to aigc_jax.data.prepare>.')
    return records.TfdsSource(config.name[len('tfds:'):], data_dir=config.data_dir, split=config.split)
  raise ValueError(f'config.data.name={config.name!r} is not a data source; use "phantom_ct" or '
                   '"tfds:<name>" (a dataset written by python -m aigc_jax.data.prepare).')


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps Hounsfield units in [lo, hi] linearly onto [-1, 1], clipping outside."""
  return (np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def unwindow(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Inverse of `window` (within the window): [-1, 1] back to Hounsfield units."""
  return (np.asarray(x, np.float32) + 1.0) / 2.0 * (hi - lo) + lo


IMAGE_KEYS = {'hu': 'image', 'hu_low': 'low_dose'}  # source key (HU) → batch key (windowed, [H, W, 1])


def _to_example(config: ml_collections.ConfigDict):
  size = config.image_size

  def fn(ex):
    out = {}
    for src, dst in IMAGE_KEYS.items():
      if src not in ex:
        continue
      hu = ex[src]
      if hu.ndim != 2:
        raise ValueError(f'{config.name}: examples are {hu.ndim}-D {hu.shape}; the 2-D trainer needs slices '
                         '(prepare the dataset with --layout=2d).')
      if hu.shape != (size, size):  # a prepared dataset at another size: fit it, keeping the aspect
        hu = geometry.fit_square(hu, size, fill=config.window_lo)[0]
      out[dst] = window(hu, config.window_lo, config.window_hi)[..., None]
    for k in config.labels:
      if k not in ex:
        raise ValueError(f'config.data.labels asks for {k!r}, which {config.name} examples lack; they have '
                         f'{sorted(ex)}.')
      v = np.asarray(ex[k])
      out[k] = v.astype(np.float32 if np.issubdtype(v.dtype, np.floating) else np.int32)
    return out
  return fn


def _augment(config: ml_collections.ConfigDict):
  """Left-right flips and a small random affine, the same for the image and its low-dose partner."""
  deg, scale, shift = config.affine_deg, config.affine_scale, config.affine_shift

  def fn(ex: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    keys = [k for k in IMAGE_KEYS.values() if k in ex]
    ex = dict(ex)
    if config.hflip and rng.random() < 0.5:
      for k in keys:
        ex[k] = np.ascontiguousarray(ex[k][:, ::-1])
    if deg or scale or shift:
      a = np.deg2rad(rng.uniform(-deg, deg))
      s = 1.0 + rng.uniform(-scale, scale)
      n = ex[keys[0]].shape[0]
      t = rng.uniform(-shift, shift, 2) * n
      # Output pixel o samples input M·(o − c) + c − t: a rotation by a and a zoom by s about the centre.
      m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / s
      c = (n - 1) / 2.0
      offset = c - m @ np.array([c, c]) - t
      for k in keys:
        ex[k] = ndimage.affine_transform(ex[k][..., 0], m, offset=offset, order=1, mode='constant',
                                         cval=-1.0)[..., None].astype(np.float32)
    return ex
  return fn


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
  if config.hflip or config.affine_deg or config.affine_scale or config.affine_shift:
    ds = ds.random_map(_augment(config), seed=config.seed)  # keyed by example index: same on any process count
  # Global batch k is rows [k*B, (k+1)*B) of the stream, whatever the process count; process p takes the
  # p-th of its P slices. Lazy: a process reads only its own examples, and the global batch (hence the
  # run) does not change when the same job runs on more or fewer processes.
  ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
  read = grain.ReadOptions(num_threads=config.num_threads, prefetch_buffer_size=config.prefetch)
  it = ds.to_iter_dataset(read)
  if config.num_workers:
    if not flags.FLAGS.is_parsed():
      # grain's workers read its absl flags; outside an absl app (notebooks, tests) nothing parsed them.
      flags.FLAGS.mark_as_parsed()
    # Worker processes for heavy per-example work (the acquisition model, big resizes); the batches, their
    # order and the checkpointable state are the same as without workers.
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.num_workers,
                                                     per_worker_buffer_size=config.prefetch))
  return it


def held_out_hu(config: ml_collections.ConfigDict, num: int, reference: str = '', data_dir: str = '',
                split: str = 'test') -> np.ndarray:
  """[num, H, W] real slices in HU at the training size that training never sees: the phantom at seed + 1
  (the second split `prepare --phantom` writes), or a prepared dataset's split (`reference='tfds:NAME'`)."""
  size = config.image_size
  if not reference:
    src = phantom.PhantomCT(seed=config.seed + 1, size=size, num_examples=num, lesion_prob=config.lesion_prob)
  else:
    if not reference.startswith('tfds:'):
      raise ValueError(f'--reference={reference!r}: give tfds:<name> (with --data_dir) or nothing for the phantom.')
    src = records.TfdsSource(reference[len('tfds:'):], data_dir=data_dir, split=split)
    if len(src) < num:
      raise ValueError(f'--reference split {split!r} has {len(src)} examples; lower --num to at most that.')
  out = [src[i]['hu'] for i in range(num)]
  return np.stack([h if h.shape == (size, size) else geometry.fit_square(h, size, config.window_lo)[0]
                   for h in out])


def first_images(config: ml_collections.ConfigDict, num: int, batch_size: int) -> np.ndarray:
  """The first `num` training images a run with this data config is served ([num, H, W], windowed): the
  memorization audit's training set and the LDM's sample for measuring its latent scale."""
  it = iter(make_dataset(config, batch_size=batch_size, process_index=0, process_count=1))
  out, have = [], 0
  while have < num:
    batch = next(it)['image'][..., 0]
    out.append(batch)
    have += len(batch)
  return np.concatenate(out)[:num]


def held_out_pairs(config: ml_collections.ConfigDict, num: int) -> tuple[np.ndarray, np.ndarray]:
  """(low, full) [num, H, W] in HU: phantom pairs of seed + 1 at the configured dose."""
  src = phantom.PhantomCT(seed=config.seed + 1, size=config.image_size, num_examples=num,
                          lesion_prob=config.lesion_prob,
                          dose=(config.low_photons, config.full_photons, config.fov_mm))
  examples = [src[i] for i in range(num)]
  return np.stack([e['hu_low'] for e in examples]), np.stack([e['hu'] for e in examples])


def throughput(config: ml_collections.ConfigDict, *, batch_size: int, num_batches: int = 50,
               warmup: int = 5) -> float:
  """Examples per second of this process's pipeline alone (no training), after `warmup` batches."""
  it = iter(make_dataset(config, batch_size=batch_size, process_index=0, process_count=1))
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  return num_batches * batch_size / (time.perf_counter() - start)


def make_global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Per-process numpy batches → global arrays laid out by `sharding` (no gather through one host)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def batch_spec(config: ml_collections.ConfigDict, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of one global batch, from one example (for init and ahead-of-time compiles)."""
  example = _to_example(config)(make_source(config)[0])
  return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype) for k, v in example.items()}

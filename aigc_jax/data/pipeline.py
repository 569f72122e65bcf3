"""The grain input pipeline: source → shuffle → window → augment → this process's rows of each batch → global
arrays.

Sources (`config.data.name`): 'phantom_ct', the built-in procedural CT (with `pairs=True`, low-/full-dose
pairs from the acquisition model), or 'tfds:NAME', a dataset written by `aigc_jax.prepare` and read
without TensorFlow from `config.data.data_dir`. Batches hold 'image' (the windowed scan, [-1, 1]),
'low_dose' for pairs, and the label keys listed in `config.data.labels`.

Each process reads only its own `batch_size // process_count` rows of every global batch, and
`make_global_batch` stitches the per-process parts into one global `jax.Array` sharded over the mesh's
data axes. The iterator's state is saved with each checkpoint, so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

import os
import time

import grain
import jax
import ml_collections
import numpy as np
from scipy import ndimage

from aigc_jax.core.privacy import accountant
from aigc_jax.core.privacy import sampling
from aigc_jax.imaging import acquisition
from aigc_jax.imaging import geometry
from aigc_jax.data import ct_bank
from aigc_jax.data import phantom
from aigc_jax.data import records
from aigc_jax.data import serving


def phantom_dose(config: ml_collections.ConfigDict) -> tuple[float, float, float]:
  """(full_dose, low_dose_fraction, fov_mm) of a data config, for `phantom.PhantomCT`."""
  if 'full_dose' not in config and 'full_photons' in config:  # e.g. the config.json of an older run
    raise ValueError('config.data.low_photons/full_photons (photons per ray, tied to the grid) are now '
                     f'config.data.full_dose (photons/mm² over the scan; clinical: {acquisition.FULL_DOSE:.3g}) '
                     f'and config.data.low_dose_fraction ({acquisition.LOW_DOSE_FRACTION:g}: quarter dose); set '
                     'those instead.')
  return config.full_dose, config.low_dose_fraction, config.fov_mm


def patch_source(config: ml_collections.ConfigDict, *, held_out: bool = False, num: int = 0):
  """The clinical-scale restoration pairs of `ct_bank` (`config.patch_size` > 0): the training bank, or the
  held-out one (seed + 1, `bank_held_out_slices` slices)."""
  if not config.pairs:
    raise ValueError(f'config.data.patch_size={config.patch_size} cuts restoration pairs from a bank of scans: '
                     'set config.data.pairs=True too (or patch_size=0 for whole slices).')
  full_dose, fraction, fov_mm = phantom_dose(config)
  return ct_bank.PhantomPatches(
      seed=config.seed + int(held_out), size=config.image_size, patch=config.patch_size,
      num_examples=num or config.num_train, num_slices=config.bank_held_out_slices if held_out else config.bank_slices,
      fov_mm=fov_mm, full_dose=full_dose, dose_fractions=tuple(config.dose_fractions) or (fraction,),
      lesion_prob=config.lesion_prob, noise_draws=config.bank_noise_draws, cache_dir=config.cache_dir,
      workers=config.bank_workers, texture_hu=tuple(config.get('bank_texture_hu', ())),
      fov_range_mm=tuple(config.get('bank_fov_range_mm', ())), bone_scale=tuple(config.get('bank_bone_scale', ())),
      # Real anatomy trains only: the held-out bank the evaluators read stays the phantom's.
      source='' if held_out else config.get('bank_source', ''), source_share=config.get('bank_source_share', 1.0),
      source_slices=config.get('bank_source_slices', 32),
      photo_share=0.0 if held_out else config.get('bank_photo_share', 0.0),
      photo_spans_hu=tuple(config.get('bank_photo_spans_hu', (150.0, 1000.0))))


def served_size(config: ml_collections.ConfigDict) -> int:
  """The side of the images the trainer is served: the patch side where patches are cut, else image_size."""
  return config.get('patch_size', 0) or config.image_size


def make_source(config: ml_collections.ConfigDict):
  """The random-access source named by `config.data.name`."""
  if config.name == 'phantom_ct' and config.get('patch_size', 0):
    return patch_source(config)
  if config.name == 'phantom_ct':
    dose = phantom_dose(config) if config.pairs else None
    return phantom.PhantomCT(seed=config.seed, size=config.image_size, num_examples=config.num_train,
                             lesion_prob=config.lesion_prob, dose=dose)
  if config.name.startswith('tfds:'):
    if not config.data_dir:
      raise ValueError(f'config.data.name={config.name!r} needs --config.data.data_dir=<the --output given '
                       'to aigc_jax.prepare>.')
    return records.TfdsSource(config.name[len('tfds:'):], data_dir=config.data_dir, split=config.split)
  raise ValueError(f'config.data.name={config.name!r} is not a data source; use "phantom_ct" or '
                   '"tfds:<name>" (a dataset written by python -m aigc_jax.prepare).')


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Maps Hounsfield units in [lo, hi] linearly onto [-1, 1], clipping outside."""
  return (np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def unwindow(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Inverse of `window` (within the window): [-1, 1] back to Hounsfield units."""
  return (np.asarray(x, np.float32) + 1.0) / 2.0 * (hi - lo) + lo


IMAGE_KEYS = {'hu': 'image', 'hu_low': 'low_dose'}  # source key (HU) → batch key (windowed, [H, W, 1])


def _to_example(config: ml_collections.ConfigDict):
  size = served_size(config)

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
                 process_count: int, poisson: serving.Poisson | None = None) -> grain.IterDataset:
  """This process's infinite iterator of batches {'image': [batch_size/process_count, H, W, 1]}.

  Args:
    config: `config.data`.
    batch_size: the global batch size.
    process_index, process_count: this process's place among the JAX processes.
    poisson: Poisson-subsampled batches of `batch_size` rows (differentially private training).
  """
  source = make_source(config)
  ds = serving.stream(source, config, poisson).map(_to_example(config))
  if config.hflip or config.affine_deg or config.affine_scale or config.affine_shift:
    # Keyed by stream position: the same on any process count; under Poisson sampling, new for every draw.
    ds = ds.random_map(_augment(config), seed=config.seed)
  return serving.serve(ds, config, batch_size=batch_size, process_index=process_index,
                       process_count=process_count, poisson=poisson, num_examples=len(source))


HELD_OUT_SPLITS = ('test', 'validation')  # the held-out splits `prepare` writes, in order of preference


def held_out_source(config: ml_collections.ConfigDict, reference: str = '', data_dir: str = '', split: str = '',
                    *, num: int = 0, pairs: bool = False) -> tuple[object, str]:
  """(source, name for reports) of the held-out real examples a run is measured against.

  By default the run's own data, never the part it trains on: for the phantom, seed + 1 (`num` slices; the
  second split `prepare --phantom` writes); for a prepared dataset (`config.name='tfds:NAME'`), its 'test'
  split, else its 'validation' split, or `split`. `reference='tfds:NAME'` names another prepared dataset
  (`data_dir` defaults to the run's). `pairs`: the phantom carries low-dose partners. Raises ValueError,
  naming the flags that give a reference, where the run's dataset has no held-out split.
  """
  if reference and not reference.startswith('tfds:'):
    raise ValueError(f'--reference={reference!r}: give tfds:<name> (with --data_dir), or nothing for the run\'s '
                     'own held-out data.')
  name = reference or config.name
  if name == 'phantom_ct' and pairs and config.get('patch_size', 0):
    return patch_source(config, held_out=True, num=num), f'phantom_ct patches, bank seed {config.seed + 1} (held out)'
  if name == 'phantom_ct':
    if split:
      raise ValueError(f'--split={split!r} selects a split of a prepared dataset; the phantom\'s held-out '
                       'slices are seed + 1 (drop --split, or give --reference=tfds:NAME --data_dir=DIR).')
    src = phantom.PhantomCT(seed=config.seed + 1, size=config.image_size, num_examples=num,
                            lesion_prob=config.lesion_prob, dose=phantom_dose(config) if pairs else None)
    return src, f'phantom_ct seed {config.seed + 1} (held out)'
  if not name.startswith('tfds:'):
    raise ValueError(f'config.data.name={name!r} has no held-out data to compare with; give one with '
                     '--reference=tfds:NAME --data_dir=DIR [--split=SPLIT].')
  data_dir = data_dir or config.data_dir
  if not data_dir:
    raise ValueError(f'--reference={name}: give the dataset\'s folder with --data_dir=DIR (the --output given '
                     'to aigc_jax.prepare).')
  dataset = name[len('tfds:'):]
  own = name == config.name and os.path.abspath(data_dir) == os.path.abspath(config.data_dir or '.')
  splits = records.info(dataset, data_dir).splits
  if split:
    if own and split == config.split:
      raise ValueError(f'--split={split!r} is the run\'s training split: the reference must be data it never '
                       f'saw (the dataset has {sorted(splits)}).')
    chosen = split
  else:
    options = [s for s in HELD_OUT_SPLITS if s in splits and not (own and s == config.split)]
    if not options:
      raise ValueError(f'{name} has no held-out split (it has {sorted(splits)}; the run trains on '
                       f'{config.split!r}): give a reference with --reference=tfds:NAME --data_dir=DIR '
                       '(and --split=SPLIT), or prepare the data with --val_fraction or --test_fraction above 0.')
    chosen = options[0]
  src = records.TfdsSource(dataset, data_dir=data_dir, split=chosen)
  return src, f'{dataset} split {chosen}' + (' (held out)' if own else '')


def _held_out_examples(config, num, reference, data_dir, split, pairs):
  src, name = held_out_source(config, reference, data_dir, split, num=num, pairs=pairs)
  if len(src) < num:
    raise ValueError(f'{name} has {len(src)} examples, fewer than the {num} asked for: lower --num '
                     '(evaluate) or the evaluator\'s num (config.evals.<name>.num).')
  return [src[i] for i in range(num)], name


def _fit(config, hu):
  size = served_size(config)
  return hu if hu.shape == (size, size) else geometry.fit_square(hu, size, config.window_lo)[0]


def held_out_hu(config: ml_collections.ConfigDict, num: int, reference: str = '', data_dir: str = '',
                split: str = '') -> np.ndarray:
  """[num, H, W] real slices in HU at the training size that training never sees (`held_out_source`)."""
  examples, _ = _held_out_examples(config, num, reference, data_dir, split, pairs=False)
  return np.stack([_fit(config, e['hu']) for e in examples])


def first_images(config: ml_collections.ConfigDict, num: int, batch_size: int) -> np.ndarray:
  """The first `num` training images a run with this data config is served ([num, H, W], windowed, augmented
  as served): the LDM's sample for measuring its latent scale."""
  it = iter(make_dataset(config, batch_size=batch_size, process_index=0, process_count=1))
  out, have = [], 0
  while have < num:
    batch = next(it)['image'][..., 0]
    out.append(batch)
    have += len(batch)
  return np.concatenate(out)[:num]


def held_out_pairs(config: ml_collections.ConfigDict, num: int, reference: str = '', data_dir: str = '',
                   split: str = '') -> tuple[np.ndarray, np.ndarray]:
  """(low, full) [num, H, W] in HU from the held-out data of `held_out_source`: phantom pairs of seed + 1 at
  the configured dose, or a prepared dataset's held-out (low_dose, image) pairs."""
  examples, name = _held_out_examples(config, num, reference, data_dir, split, pairs=True)
  if 'hu_low' not in examples[0]:
    raise ValueError(f'{name} has no low-dose images (key low_dose): restoration needs pairs; give '
                     '--reference=tfds:NAME --data_dir=DIR of a dataset with them (prepare --phantom --pairs).')
  return (np.stack([_fit(config, e['hu_low']) for e in examples]),
          np.stack([_fit(config, e['hu']) for e in examples]))


def _monitor_source(config: ml_collections.ConfigDict, num: int, pairs: bool = False) -> tuple[object, str, int]:
  """(source, where from, count) of what training-time evaluators measure on: `held_out_source`'s held-out
  data, else the first training examples (said in the name, so the log never passes them off as held out);
  fewer than `num` where that is all there is (said too). Training should not refuse to start over a monitor."""
  try:
    src, name = held_out_source(config, num=num, pairs=pairs)
  except ValueError:
    src, name = make_source(config), f'{config.name} training split (no held-out split to monitor on)'
  if not len(src):
    raise ValueError(f'{name} has no examples for the evaluators of config.evals to measure on.')
  if len(src) < num:
    name = f'{name}, all {len(src)} of its examples (fewer than the {num} asked for)'
  return src, name, min(num, len(src))


def monitor_hu(config: ml_collections.ConfigDict, num: int) -> tuple[np.ndarray, str]:
  """([≤ num, H, W] HU, where from) for training-time grids and scores (`_monitor_source`)."""
  src, name, n = _monitor_source(config, num)
  return np.stack([_fit(config, src[i]['hu']) for i in range(n)]), name


def monitor_examples(config: ml_collections.ConfigDict, num: int) -> tuple[dict[str, np.ndarray], str]:
  """(batch, where from) of ≤ `num` examples as the trainer is served them, unaugmented ('image' windowed at
  the training size and the keys of `config.labels`), from `_monitor_source`."""
  src, name, n = _monitor_source(config, num)
  return examples_at(config, src, range(n)), name


def examples_at(config: ml_collections.ConfigDict, source, indices) -> dict[str, np.ndarray]:
  """The batch of `source`'s examples at `indices` as the trainer is served them, unaugmented."""
  fn = _to_example(config)
  examples = [fn(source[int(i)]) for i in indices]
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def monitor_pairs(config: ml_collections.ConfigDict, num: int) -> tuple[np.ndarray, np.ndarray, str]:
  """(low, full, where from) as `monitor_hu`, for restoration: held-out pairs, else the first training pairs."""
  src, name, n = _monitor_source(config, num, pairs=True)
  examples = [src[i] for i in range(n)]
  if 'hu_low' not in examples[0]:
    raise ValueError(f'{name} has no low-dose images (key low_dose): restoration needs pairs '
                     '(config.data.pairs=True, or a dataset prepared with --pairs).')
  return (np.stack([_fit(config, e['hu_low']) for e in examples]),
          np.stack([_fit(config, e['hu']) for e in examples]), name)


def served_indices(config: ml_collections.ConfigDict, num_served: int, num_examples: int | None = None
                   ) -> np.ndarray:
  """Source indices of the distinct training examples among the first `num_served` the stream yields, in
  `make_dataset`'s order (shuffled with config.seed): after a full epoch, every example of the split.
  `num_examples`: the split's size for a source other than CT slices (text, tabular: `serving.stream`'s
  order is the same)."""
  n = len(make_source(config)) if num_examples is None else num_examples
  if num_served >= n:
    return np.arange(n)
  order = grain.MapDataset.range(n)
  if config.shuffle:
    order = order.shuffle(seed=config.seed)  # as make_dataset: the first epoch is this permutation
  return np.array([order[i] for i in range(num_served)], np.int64)


def trained_indices(workdir: str, config: ml_collections.ConfigDict, step: int, num_examples: int | None = None
                    ) -> np.ndarray:
  """Source indices of the distinct training examples the first `step` steps of the run in `workdir` (with
  run config `config`) were served: the shuffled stream's first step × batch_size (`served_indices`), or, for
  a private run, every example one of its Poisson draws included (its plan and seed read from the workdir)."""
  if not (config.get('privacy') and config.privacy.get('enabled')):
    return served_indices(config.data, step * int(config.batch_size), num_examples)
  record = accountant.read_record(workdir)
  if record is None:
    raise FileNotFoundError(f'{os.path.join(workdir, accountant.RECORD)} not found: a private run writes it at '
                            'its start; rerun the training command to resume and write it.')
  poisson = sampling.Poisson(record['rate'], record['capacity'], accountant.run_seed(workdir, config))
  n = int(record['num_examples'])
  seen = np.zeros(n, bool)
  for t in range(step):
    seen[poisson.draw(t, n)] = True
    if seen.all():  # a long run covers every example early: the rest of its draws change nothing
      break
  return np.flatnonzero(seen)


def example_groups(config: ml_collections.ConfigDict) -> str:
  """What `training_examples` groups by: 'patient' where the data stores one (prepared scans: a salted hash),
  else 'example' (phantom slices are independent draws, each its own group)."""
  return 'patient' if 'patient' in make_source(config)[0] else 'example'


def training_examples(config: ml_collections.ConfigDict, indices: np.ndarray, chunk: int = 256):
  """Yields (windowed images [n, H, W], groups [n] int64) of the training examples at `indices`, `chunk` at
  a time, as the model sees them before augmentation; the group is the patient or, without one, the index."""
  src, to_example = make_source(config), _to_example(config)
  for i in range(0, len(indices), chunk):
    part = [(int(j), src[int(j)]) for j in indices[i:i + chunk]]
    yield (np.stack([to_example(e)['image'][..., 0] for _, e in part]),
           np.array([int(e['patient']) if 'patient' in e else j for j, e in part], np.int64))


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


class CTSlices:
  """The CT slices of `config.data` (the phantom or a prepared dataset) as the trainer takes a data source:
  `batch_spec(batch_size)` and `make_dataset(batch_size=, process_index=, process_count=)`."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    del workdir  # nothing to keep with the run
    self.config = config

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return batch_spec(self.config, batch_size)

  def num_train(self) -> int:
    """How many slices the training data has (what Poisson sampling draws from)."""
    return len(make_source(self.config))

  def make_dataset(self, **kwargs):
    return make_dataset(self.config, **kwargs)


def pixel_mm(config: ml_collections.ConfigDict) -> float:
  """In-plane pixel size of the training images, for the exported geometry."""
  if config.name.startswith('tfds:'):
    meta = records.info(config.name[len('tfds:'):], config.data_dir).metadata
    median = (meta.get('spacing_mm') or {}).get('median')
    size = meta.get('size') or 0
    if median and size:
      return float(median[0]) * size / config.image_size
    return 1.0
  return float(config.fov_mm) / config.image_size


def batch_spec(config: ml_collections.ConfigDict, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of one global batch, from one example (for init and ahead-of-time compiles)."""
  if config.name == 'phantom_ct' and config.get('patch_size', 0) and not config.labels:
    # Known without the bank: loading a run (denoise, evaluate) on another machine must not scan one.
    side = (batch_size, config.patch_size, config.patch_size, 1)
    return {k: jax.ShapeDtypeStruct(side, np.float32) for k in ('image', 'low_dose')}
  example = _to_example(config)(make_source(config)[0])
  return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype) for k, v in example.items()}

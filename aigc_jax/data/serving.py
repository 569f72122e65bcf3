"""How every data source serves batches: an endless, deterministically reshuffled stream of examples, cut
into global batches of which each process reads only its own rows. Shared by the CT, text and tabular sources.

Differentially private training (`aigc_jax/core/privacy/`) needs the sampling its accountant assumes
instead: with `poisson=Poisson(...)` (`core/privacy/sampling.py`), step t includes every example
independently with probability `rate` (drawn from the key (seed, t), the same on every process), and its
variable number of examples is padded to the fixed `capacity` rows the step compiles for, with WEIGHT_KEY
[capacity] (1: drawn, 0: padding).
"""

import collections
import threading

from absl import flags
import grain
import ml_collections
import numpy as np

from aigc_jax.core.privacy import sampling

_ENDLESS = 2 ** 62  # the length of a Poisson stream: steps × capacity rows, never reached
Poisson = sampling.Poisson
WEIGHT_KEY = sampling.WEIGHT_KEY


class _PoissonRows:
  """Random access over the endless row stream of Poisson batches: row j is slot j % capacity of step
  j // capacity, a drawn example, or (past the draw) a padding copy of one that the batch weight masks."""

  def __init__(self, source, poisson: Poisson):
    self.source, self.poisson, self.n = source, poisson, len(source)
    if not self.n:
      raise ValueError('Poisson sampling over an empty data source: the training split has no examples.')
    self._draws, self._lock = collections.OrderedDict(), threading.Lock()

  def __getstate__(self):  # grain's worker processes get a copy: without the lock and the cache
    return {'source': self.source, 'poisson': self.poisson}

  def __setstate__(self, state):
    self.__init__(state['source'], state['poisson'])

  def draw(self, step: int) -> np.ndarray:
    with self._lock:  # grain reads rows from several threads; a draw is computed once per step
      if step not in self._draws:
        self._draws[step] = self.poisson.draw(step, self.n)
        while len(self._draws) > 16:
          self._draws.popitem(last=False)
      return self._draws[step]

  def __len__(self):
    return _ENDLESS

  def __getitem__(self, j):
    step, slot = divmod(int(j), self.poisson.capacity)
    picked = self.draw(step)
    return self.source[int(picked[slot]) if slot < len(picked) else (int(picked[0]) if len(picked) else 0)]


class Rows:
  """Random access over a dict of arrays that share their leading axis (a grain source): row i of each."""

  def __init__(self, rows: dict[str, np.ndarray]):
    self.rows = rows

  def __len__(self):
    return len(next(iter(self.rows.values())))

  def __getitem__(self, i):
    return {k: v[i] for k, v in self.rows.items()}


def stream(source, config: ml_collections.ConfigDict, poisson: Poisson | None = None) -> grain.MapDataset:
  """`source` (random access: __len__, __getitem__) shuffled with config.seed and repeated forever,
  reshuffled differently each epoch, deterministically; with `poisson`, the rows of its batches instead."""
  if poisson is not None:
    return grain.MapDataset.source(_PoissonRows(source, poisson))
  ds = grain.MapDataset.source(source)
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed)  # the same permutation on every process
  return ds.repeat(None)


def serve(ds: grain.MapDataset, config: ml_collections.ConfigDict, *, batch_size: int, process_index: int,
          process_count: int, poisson: Poisson | None = None, num_examples: int = 0) -> grain.IterDataset:
  """This process's iterator over its rows of each global batch of `batch_size` examples of `ds`; with
  `poisson` (and the source's `num_examples`), `ds` is `stream(..., poisson)` and each batch carries
  WEIGHT_KEY."""
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} is not divisible by the {process_count} processes.')
  local = batch_size // process_count
  # Global batch k is rows [k*B, (k+1)*B) of the stream, whatever the process count; process p takes the
  # p-th of its P slices. Lazy: a process reads only its own examples, and the global batch (hence the
  # run) does not change when the same job runs on more or fewer processes.
  ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
  if poisson is not None:
    if batch_size != poisson.capacity:
      raise ValueError(f'Poisson batches have {poisson.capacity} rows; batch_size={batch_size} differs.')
    draws = _PoissonRows(range(num_examples), poisson)
    slots = np.arange(local) + process_index * local

    def weigh(step, batch):  # after the slice above, item k of this process is its part of step k
      return {**batch, WEIGHT_KEY: (slots < len(draws.draw(step))).astype(np.float32)}
    ds = ds.map_with_index(weigh)
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


class RowsSource:
  """What a data source whose splits are dicts of arrays (`self.rows(split)`, `self.config.split`) gives the
  trainer besides `batch_spec`: the text and tabular sources."""

  def num_train(self) -> int:
    """How many rows the training split has (what Poisson sampling draws from)."""
    return len(Rows(self.rows(self.config.split)))

  def make_dataset(self, *, batch_size: int, process_index: int, process_count: int,
                   poisson: Poisson | None = None) -> grain.IterDataset:
    source = Rows(self.rows(self.config.split))
    return serve(stream(source, self.config, poisson), self.config, batch_size=batch_size,
                 process_index=process_index, process_count=process_count, poisson=poisson,
                 num_examples=len(source))

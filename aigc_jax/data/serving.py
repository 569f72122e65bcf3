"""How every data source serves batches: an endless, deterministically reshuffled stream of examples, cut
into global batches of which each process reads only its own rows. Shared by the CT, text and tabular sources."""

from absl import flags
import grain
import ml_collections
import numpy as np


class Rows:
  """Random access over a dict of arrays that share their leading axis (a grain source): row i of each."""

  def __init__(self, rows: dict[str, np.ndarray]):
    self.rows = rows

  def __len__(self):
    return len(next(iter(self.rows.values())))

  def __getitem__(self, i):
    return {k: v[i] for k, v in self.rows.items()}


def stream(source, config: ml_collections.ConfigDict) -> grain.MapDataset:
  """`source` (random access: __len__, __getitem__) shuffled with config.seed and repeated forever,
  reshuffled differently each epoch, deterministically."""
  ds = grain.MapDataset.source(source)
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed)  # the same permutation on every process
  return ds.repeat(None)


def serve(ds: grain.MapDataset, config: ml_collections.ConfigDict, *, batch_size: int, process_index: int,
          process_count: int) -> grain.IterDataset:
  """This process's iterator over its rows of each global batch of `batch_size` examples of `ds`."""
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} is not divisible by the {process_count} processes.')
  local = batch_size // process_count
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

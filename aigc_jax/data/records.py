"""Datasets on disk: TFDS in ArrayRecord format, written and read without TensorFlow.

`write` builds a TFDS dataset from plain Python generators (one per split); `TfdsSource` reads one split
back by random access (`tfds.data_source`) for the grain pipeline. Images are stored as tensors (int16 HU
for CT), never as encoded `tfds.features.Image`, which would need TensorFlow.
"""

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

VERSION = '1.0.0'


def tfds_api():
  # Imported on use: the trainer on the built-in phantom never needs TFDS.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()  # its bars print file paths and flood CI logs
  return tfds


def dataset_dir(data_dir: str, name: str) -> str:
  return os.path.join(os.path.abspath(data_dir), name, VERSION)


def write(name: str, data_dir: str, features: Mapping[str, Any],
          splits: Mapping[str, Callable[[], Iterator[dict[str, np.ndarray]]]],
          metadata: Mapping[str, Any], description: str = '') -> str:
  """Writes splits of examples as TFDS `name` under `data_dir`; returns the dataset's directory.

  Args:
    name: the TFDS name (snake_case); read back with `config.data.name = 'tfds:<name>'`.
    data_dir: the TFDS data directory (the dataset goes to `<data_dir>/<name>/1.0.0`).
    features: `tfds.features` by key (e.g. `Tensor(shape=(256, 256), dtype=np.int16)`).
    splits: split name → a callable returning that split's examples; every split must yield some.
    metadata: JSON-able facts saved as the dataset's `metadata.json` (counts, spacing, statistics).
    description: one line for `dataset_info.json`.
  """
  tfds = tfds_api()
  if os.path.exists(dataset_dir(data_dir, name)):
    raise FileExistsError(f'{dataset_dir(data_dir, name)} already exists: choose another --name or delete it.')

  class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(VERSION)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, description=description,
                                   features=tfds.features.FeaturesDict(dict(features)),
                                   metadata=tfds.core.MetadataDict(metadata))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
      # TFDS shuffles at write time by key; the key is only the position (no identifier is ever a key).
      for i, example in enumerate(splits[split]()):
        yield f'{split}/{i}', example

  _Builder.name = name
  builder = _Builder(data_dir=os.path.abspath(data_dir), file_format='array_record')
  builder.download_and_prepare()
  downloads = os.path.join(os.path.abspath(data_dir), 'downloads')
  for sub in ('extracted', ''):  # TFDS creates these even with nothing to download
    path = os.path.join(downloads, sub)
    if os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)
  return dataset_dir(data_dir, name)


def info(name: str, data_dir: str):
  """The dataset's `tfds.core.DatasetInfo` (splits, features, metadata), or a clear error."""
  tfds = tfds_api()
  try:
    return tfds.builder(name, data_dir=os.path.abspath(data_dir)).info
  except Exception as e:  # TFDS raises several types for "not there"
    raise FileNotFoundError(
        f'No prepared dataset {name!r} under data_dir={data_dir!r} ({type(e).__name__}). Write it with '
        f'`python -m aigc_jax.prepare --name={name} --output=<dir> ...` and set '
        f'--config.data.data_dir=<dir>.') from None


class TfdsSource:
  """Random access to one split; examples come back with the image as 'hu' (float32), as the pipeline wants.

  Stored keys: 'image' (the scan in its units: HU for CT) and optionally 'low_dose'; both become 'hu' and
  'hu_low'. Everything else (labels, spacing) passes through.
  """

  def __init__(self, name: str, *, data_dir: str, split: str):
    tfds = tfds_api()
    splits = info(name, data_dir).splits
    if split not in splits:
      raise ValueError(f'Dataset {name!r} has no split {split!r}; it has {sorted(splits)} '
                       '(set config.data.split).')
    self._source = tfds.data_source(name, split=split, data_dir=os.path.abspath(data_dir), download=False)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    ex = dict(self._source[int(index)])
    out = {'hu': np.asarray(ex.pop('image'), np.float32)}
    if 'low_dose' in ex:
      out['hu_low'] = np.asarray(ex.pop('low_dose'), np.float32)
    out.update({k: np.asarray(v) for k, v in ex.items()})
    return out

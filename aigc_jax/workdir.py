"""What a training run's workdir holds, read back: its config (`config.json`, written by the trainer), the
pixel size of its data, and the EMA parameters of its newest checkpoint that restores.

A library module below the tasks: it builds no task itself (`aigc_jax.tasks.load_run` does), so a task that
loads another run (latent diffusion's autoencoder) can use it without an import circle.
"""

import json
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from aigc_jax import checkpoint
from aigc_jax.data import pipeline
from aigc_jax.data import records


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: --workdir must be a folder a training run wrote '
                            '(python -m aigc_jax.main ... --workdir=<it>).')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def pixel_mm(data: ml_collections.ConfigDict) -> float:
  """In-plane pixel size of the training images, for the exported geometry."""
  if data.name.startswith('tfds:'):
    meta = records.info(data.name[len('tfds:'):], data.data_dir).metadata
    median = (meta.get('spacing_mm') or {}).get('median')
    size = meta.get('size') or 0
    if median and size:
      return float(median[0]) * size / data.image_size
    return 1.0
  return float(data.fov_mm) / data.image_size


def ema_params(workdir: str, task: Any, config: ml_collections.ConfigDict, *, flag: str = '--workdir'
               ) -> tuple[Any, int]:
  """(EMA params, step) of the newest checkpoint in `workdir` that restores, shaped as `task` builds them (a
  broken newer checkpoint is named in the log and skipped, never renamed: `checkpoint.restore_params`)."""
  spec = pipeline.batch_spec(config.data, 1)
  abstract = nn.meta.unbox(jax.eval_shape(lambda k: task.init(k, spec), jax.random.PRNGKey(0)))
  loaded = checkpoint.restore_params(workdir, {'ema_params': abstract}, flag=flag)
  return loaded['ema_params'], loaded['step']

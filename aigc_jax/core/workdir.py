"""What a training run's workdir holds, read back: its config (`config.json`, written by the trainer) and
the EMA parameters of its newest checkpoint that restores (or of a given step).

A core module: it builds no task itself (`aigc_jax.experiment.load_run` does), so a task that loads another
run (latent diffusion's autoencoder) can use it without an import circle.
"""

import json
import os
from typing import Any

import ml_collections

from aigc_jax.core import checkpoint


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: --workdir must be a folder a training run wrote '
                            '(python -m aigc_jax.main ... --workdir=<it>).')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def ema_params(workdir: str, abstract: Any, *, step: int = 0, flag: str = '--workdir') -> tuple[Any, int]:
  """(EMA params, step) of the newest checkpoint in `workdir` that restores (or of `step` when nonzero), shaped
  as `abstract` (a pytree of jax.ShapeDtypeStruct); a broken newer checkpoint is named in the log and
  skipped, never renamed (`checkpoint.restore_params`)."""
  loaded = checkpoint.restore_params(workdir, {'ema_params': abstract}, flag=flag, step=step)
  return loaded['ema_params'], loaded['step']

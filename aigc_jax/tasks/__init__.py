"""Objectives, selected by `config.task.name`; see task.py for what a task gives the trainer. `load_run`
rebuilds a trained run's task and EMA parameters from its workdir; `generate` samples from it in HU."""

import jax
import ml_collections
import numpy as np

from aigc_jax import workdir as workdir_lib
from aigc_jax.data import pipeline
from aigc_jax.tasks import autoencoder
from aigc_jax.tasks import diffusion
from aigc_jax.tasks import gan
from aigc_jax.tasks import latent_diffusion
from aigc_jax.tasks import restoration

TASKS = {
    'diffusion': diffusion.DiffusionTask,
    'restoration': restoration.RestorationTask,
    'gan': gan.GANTask,
    'vae': autoencoder.VAETask,
    'latent_diffusion': latent_diffusion.LatentDiffusionTask,
}


def build(config):
  if config.task.name not in TASKS:
    raise ValueError(f'config.task.name={config.task.name!r} is not a task; choose one of {sorted(TASKS)}.')
  return TASKS[config.task.name](config)


def load_run(workdir: str, task_overrides: dict | None = None):
  """(config, task, EMA params, step) of the newest checkpoint in a training workdir that restores."""
  config = workdir_lib.load_config(workdir)
  for key, value in (task_overrides or {}).items():
    config.task[key] = value
  task = build(config)
  params, step = workdir_lib.ema_params(workdir, task, config)
  return config, task, params, step


def generate(workdir: str, *, num: int, seed: int = 0, batch: int = 16, overrides: dict | None = None,
             label: int = -1) -> tuple[np.ndarray, int, ml_collections.ConfigDict]:
  """[num, H, W] images in HU from the latest EMA parameters in `workdir`; also the step and the config."""
  config, task, params, step = load_run(workdir, {**(overrides or {}), 'num_samples': batch})
  shape = (batch,) + tuple(pipeline.batch_spec(config.data, 1)['image'].shape[1:])
  labels = None
  if label >= 0:
    if not 0 <= label < config.model.num_classes:
      raise ValueError(f'--label={label}: this model has config.model.num_classes={config.model.num_classes}.')
    labels = np.full((batch,), label, np.int32)
  sample = jax.jit(lambda p, k: task.sample(p, k, shape, labels))
  out = []
  for i in range(-(-num // batch)):
    out.append(np.asarray(sample(params, jax.random.fold_in(jax.random.PRNGKey(seed), i))))
  images = np.concatenate(out)[:num, ..., 0]
  return pipeline.unwindow(images, config.data.window_lo, config.data.window_hi), step, config

"""Objectives, selected by `config.task.name`; see task.py for what a task gives the trainer."""

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

"""Latent diffusion (Rombach et al. 2022): the diffusion task run on the frozen latents of a trained KL
autoencoder (configs/ct_vae.py), with samples decoded back to images (and so to HU).

`config.task.autoencoder` names the autoencoder's workdir: its config and latest EMA parameters are loaded
when the task is built (for training, sampling and evaluation alike; keep that workdir). The latents are
multiplied by 1 / their standard deviation, measured on the first `config.task.scale_examples` training
images, so the diffusion sees unit-variance data as its noise schedule assumes; the factor is logged, and it
is the same at every rebuild because the pipeline serves the same first images.

Everything else (objectives, predictions, samplers, guidance, the U-Net) is `DiffusionTask`'s.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax import metrics
from aigc_jax.data import pipeline
from aigc_jax.tasks import diffusion


class LatentDiffusionTask(diffusion.DiffusionTask):

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    # Imported here: aigc_jax.sample builds tasks, so a module-level import would be circular.
    from aigc_jax import sample  # pylint: disable=g-import-not-at-top
    path = config.task.autoencoder
    if not path or not os.path.exists(os.path.join(path, 'config.json')):
      raise ValueError(f'config.task.autoencoder={path!r} is not a trained autoencoder workdir: train one first '
                       '(python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae) and '
                       'pass --config.task.autoencoder=runs/ct_vae.')
    vae_config, self.vae, self.vae_params, self.vae_step = sample.load_run(path)
    if vae_config.task.name != 'vae':
      raise ValueError(f'config.task.autoencoder={path!r} trained a {vae_config.task.name!r} task, not a "vae".')
    for key in ('image_size', 'window_lo', 'window_hi'):
      if vae_config.data[key] != config.data[key]:
        raise ValueError(f'config.data.{key}={config.data[key]} differs from the autoencoder\'s '
                         f'({vae_config.data[key]}, in {path}/config.json); set them equal.')
    self.vae_params = jax.device_get(self.vae_params)
    encode = jax.jit(lambda p, x: self.vae.encode(p, x)[0])
    images = pipeline.first_images(config.data, config.task.scale_examples, config.batch_size)[..., None]
    means = np.concatenate([np.asarray(encode(self.vae_params, images[i:i + 64]))
                            for i in range(0, len(images), 64)])
    self.latent_scale = float(1.0 / means.std())
    metrics.log(f'latent diffusion on {path} (step {self.vae_step}): latents '
                f'{self.vae.latent_shape((1,) + images.shape[1:])[1:]}, std {means.std():.4g} over '
                f'{len(images)} training images, scaled by {self.latent_scale:.4g}')

  def _latent_spec(self, batch):
    shape = self.vae.latent_shape(tuple(batch['image'].shape))
    return {**batch, 'image': jax.ShapeDtypeStruct(shape, jnp.float32)}

  def init(self, rng, batch):
    return super().init(rng, self._latent_spec(batch))

  def loss(self, params, batch, rng):
    enc_rng, rng = jax.random.split(rng)
    mean, logvar = self.vae.encode(self.vae_params, batch['image'])
    z = (mean + jnp.exp(0.5 * logvar) * jax.random.normal(enc_rng, mean.shape)) * self.latent_scale
    return super().loss(params, {**batch, 'image': z}, rng)

  def sample(self, params, rng, shape, labels=None):
    z = super().sample(params, rng, self.vae.latent_shape(tuple(shape)), labels)
    return jnp.clip(self.vae.decode(self.vae_params, z / self.latent_scale), -1.0, 1.0)

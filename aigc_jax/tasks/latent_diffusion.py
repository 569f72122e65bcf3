"""Latent diffusion (Rombach et al. 2022): the diffusion task run on the frozen latents of a trained KL
autoencoder (configs/ct_vae.py), with samples decoded back to images (and so to HU).

`config.task.autoencoder` names the autoencoder's workdir: its config and latest EMA parameters are loaded
when the task is built (for training, sampling and evaluation alike; keep that workdir). The latents are
multiplied by 1 / their standard deviation, measured on posterior draws for the first
`config.task.scale_examples` training images, so the diffusion sees unit-variance data as its noise schedule
assumes; the factor is logged, and it is the same at every rebuild because the pipeline serves the same first
images (and the draws use fixed keys). Sampling does not clip the latents (`bounded = False`); only the decoded
images are clipped to [-1, 1].

Everything else (objectives, predictions, samplers, guidance, the U-Net) is `DiffusionTask`'s.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax import metrics
from aigc_jax import workdir
from aigc_jax.data import pipeline
from aigc_jax.tasks import autoencoder
from aigc_jax.tasks import diffusion


def _posterior_sample(mean_logvar, key):
  """z ~ N(mean, exp(logvar)): a draw from the autoencoder's posterior."""
  mean, logvar = mean_logvar
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)


class LatentDiffusionTask(diffusion.DiffusionTask):

  bounded = False  # unit-variance latents: clipping them to [-1, 1] would shrink the samples' spread

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    path = config.task.autoencoder
    if not path or not os.path.exists(os.path.join(path, 'config.json')):
      raise ValueError(f'config.task.autoencoder={path!r} is not a trained autoencoder workdir: train one first '
                       '(python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae) and '
                       'pass --config.task.autoencoder=runs/ct_vae.')
    vae_config = workdir.load_config(path)
    if vae_config.task.name != 'vae':
      raise ValueError(f'config.task.autoencoder={path!r} trained a {vae_config.task.name!r} task, not a "vae".')
    self.vae = autoencoder.VAETask(vae_config)
    self.vae_params, self.vae_step = workdir.ema_params(path, self.vae, vae_config,
                                                        flag='config.task.autoencoder')
    for key in ('image_size', 'window_lo', 'window_hi'):
      if vae_config.data[key] != config.data[key]:
        raise ValueError(f'config.data.{key}={config.data[key]} differs from the autoencoder\'s '
                         f'({vae_config.data[key]}, in {path}/config.json); set them equal.')
    self.vae_params = jax.device_get(self.vae_params)
    images = pipeline.first_images(config.data, config.task.scale_examples, config.batch_size)[..., None]
    # The scale is measured on what the diffusion is trained on: latents drawn from the posterior (mean +
    # σ·noise, as `loss` draws them), not the posterior means, whose spread is smaller. A fixed key keeps the
    # factor the same at every rebuild.
    draw = jax.jit(lambda p, x, key: _posterior_sample(self.vae.encode(p, x), key))
    latents = np.concatenate([np.asarray(draw(self.vae_params, images[i:i + 64], jax.random.PRNGKey(i)))
                              for i in range(0, len(images), 64)])
    self.latent_scale = float(1.0 / latents.std())
    metrics.log(f'latent diffusion on {path} (step {self.vae_step}): latents '
                f'{self.vae.latent_shape((1,) + images.shape[1:])[1:]}, std {latents.std():.4g} over '
                f'{len(images)} training images, scaled by {self.latent_scale:.4g}')

  def _latent_spec(self, batch):
    shape = self.vae.latent_shape(tuple(batch['image'].shape))
    return {**batch, 'image': jax.ShapeDtypeStruct(shape, jnp.float32)}

  def init(self, rng, batch):
    return super().init(rng, self._latent_spec(batch))

  def loss(self, params, batch, rng):
    enc_rng, rng = jax.random.split(rng)
    z = _posterior_sample(self.vae.encode(self.vae_params, batch['image']), enc_rng) * self.latent_scale
    return super().loss(params, {**batch, 'image': z}, rng)

  def sample(self, params, rng, shape, labels=None):
    """Latents drawn unclipped (see `bounded`), decoded, then clipped to the image range [-1, 1]."""
    z = self.draw(self.model_fn(params, shape[0], labels), rng, self.vae.latent_shape(tuple(shape)))
    return jnp.clip(self.vae.decode(self.vae_params, z / self.latent_scale), -1.0, 1.0)

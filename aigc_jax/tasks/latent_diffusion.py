"""Latent diffusion (Rombach et al. 2022): the diffusion task run on the frozen latents of a trained KL
autoencoder (configs/ct_vae.py), with samples decoded back to images (and so to HU).

The autoencoder is part of this run's parameters: `{'denoiser': U-Net, 'autoencoder': {'vae': its EMA
weights, 'latent_scale': 1 / std of its latents, 'step': the checkpoint step they came from (a float: every parameter leaf is differentiable)}}`. The
'autoencoder' subtree is frozen (`frozen`: no update, no optimizer state), sharded like the rest, and saved in
every checkpoint, so a finished LDM keeps its decoder and scale whatever later happens to the autoencoder run.

When the run starts from scratch (`pretrained`), the weights are read from `config.task.autoencoder` (a
workdir) at step `config.task.autoencoder_step` (0: its newest checkpoint that restores; the step used is
written back into the run's config.json). A resume, `aigc_jax.sample` or `aigc_jax.evaluate` takes them from
this run's checkpoint and only needs the autoencoder workdir's config.json (its architecture); they refuse
a checkpoint whose autoencoder step differs from a nonzero `config.task.autoencoder_step` (`check_params`).

The latents are multiplied by the scale, measured on posterior draws for the first `config.task.scale_examples`
training images, so the diffusion sees unit-variance data as its noise schedule assumes. Sampling does not
clip the latents (`bounded = False`); only the decoded images are clipped to [-1, 1].

Everything else (objectives, predictions, samplers, guidance, the U-Net) is `DiffusionTask`'s.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax.core import reporting
from aigc_jax.core import workdir
from aigc_jax.data import pipeline
from aigc_jax.tasks import autoencoder
from aigc_jax.tasks import diffusion


def _posterior_sample(mean_logvar, key):
  """z ~ N(mean, exp(logvar)): a draw from the autoencoder's posterior."""
  mean, logvar = mean_logvar
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)


class LatentDiffusionTask(diffusion.DiffusionTask):

  bounded = False  # unit-variance latents: clipping them to [-1, 1] would shrink the samples' spread
  frozen = ('autoencoder',)

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.config = config
    path = config.task.autoencoder
    if not path or not os.path.exists(os.path.join(path, 'config.json')):
      raise ValueError(f'config.task.autoencoder={path!r} is not a trained autoencoder workdir: train one first '
                       '(python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae) and '
                       'pass --config.task.autoencoder=runs/ct_vae.')
    self.vae_config = workdir.load_config(path)
    if self.vae_config.task.name != 'vae':
      raise ValueError(f'config.task.autoencoder={path!r} trained a {self.vae_config.task.name!r} task, not a '
                       '"vae".')
    for key in ('image_size', 'window_lo', 'window_hi'):
      if self.vae_config.data[key] != config.data[key]:
        raise ValueError(f'config.data.{key}={config.data[key]} differs from the autoencoder\'s '
                         f'({self.vae_config.data[key]}, in {path}/config.json); set them equal.')
    self.vae = autoencoder.VAETask(self.vae_config)

  def _latent_spec(self, batch):
    shape = self.vae.latent_shape(tuple(batch['image'].shape))
    return {**batch, 'image': jax.ShapeDtypeStruct(shape, jnp.float32)}

  def init(self, rng, batch):
    """The denoiser freshly initialized; the autoencoder subtree with the right shapes, filled in from the
    autoencoder run by `pretrained` (or from this run's checkpoint on a resume)."""
    vae_rng, rng = jax.random.split(rng)
    image = {'image': jax.ShapeDtypeStruct((1,) + tuple(batch['image'].shape[1:]), jnp.float32)}
    return {'denoiser': super().init(rng, self._latent_spec(batch)),
            'autoencoder': {'vae': self.vae.init(vae_rng, image)['vae'],
                            'latent_scale': jnp.ones([], jnp.float32), 'step': jnp.zeros([], jnp.float32)}}

  def pretrained(self, params):
    """Reads the autoencoder's EMA weights at the configured step, measures the latent scale, and records
    the step in the config (written to config.json after this)."""
    t = self.config.task
    abstract = {'vae': jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                    params['autoencoder']['vae'])}
    vae_params, step = workdir.ema_params(t.autoencoder, abstract, step=t.autoencoder_step,
                                          flag='config.task.autoencoder')
    vae_params = jax.device_get(vae_params)
    images = pipeline.first_images(self.config.data, t.scale_examples, self.config.batch_size)[..., None]
    # The scale is measured on what the diffusion is trained on: latents drawn from the posterior (mean +
    # σ·noise, as `loss` draws them), not the posterior means, whose spread is smaller. Fixed keys.
    draw = jax.jit(lambda p, x, key: _posterior_sample(self.vae.encode(p, x), key))
    latents = np.concatenate([np.asarray(draw(vae_params, images[i:i + 64], jax.random.PRNGKey(i)))
                              for i in range(0, len(images), 64)])
    scale = float(1.0 / latents.std())
    t.autoencoder_step = int(step)
    reporting.log(f'latent diffusion on {t.autoencoder} (step {step}, frozen in this run\'s parameters): '
                  f'latents {latents.shape[1:]}, std {latents.std():.4g} over {len(images)} training images, '
                  f'scaled by {scale:.4g}')
    return {**jax.device_get(params), 'autoencoder': {
        'vae': vae_params['vae'], 'latent_scale': np.float32(scale), 'step': np.float32(step)}}

  def check_params(self, params):
    """Refuses weights whose autoencoder step differs from a configured nonzero one."""
    want = self.config.task.autoencoder_step
    have = int(round(float(jax.device_get(params['autoencoder']['step']))))
    if want and have != want:
      raise ValueError(f'config.task.autoencoder_step={want}, but this run\'s checkpoint holds the autoencoder of '
                       f'step {have} ({self.config.task.autoencoder}): a latent diffusion model only decodes with '
                       f'the autoencoder it was trained on. Use --config.task.autoencoder_step={have} (or 0), or '
                       'train a new run in a new workdir.')

  def per_example_loss(self, params, batch, rng, timestep=None):
    enc_rng, rng = jax.random.split(rng)
    ae = jax.lax.stop_gradient(params['autoencoder'])  # frozen: no gradient to compute
    z = _posterior_sample(self.vae.encode(ae, batch['image']), enc_rng) * ae['latent_scale']
    return super().per_example_loss(params['denoiser'], {**batch, 'image': z}, rng, timestep)

  def sample(self, params, rng, shape, labels=None):
    """Latents drawn unclipped (see `bounded`), decoded, then clipped to the image range [-1, 1]."""
    ae = params['autoencoder']
    z = self.draw(self.model_fn(params['denoiser'], shape[0], labels), rng, self.vae.latent_shape(tuple(shape)))
    return jnp.clip(self.vae.decode(ae, z / ae['latent_scale']), -1.0, 1.0)

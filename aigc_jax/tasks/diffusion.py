"""Image diffusion: ε-prediction training and DDIM/DDPM sampling with the EMA parameters."""

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax import diffusion
from aigc_jax import models
from aigc_jax.tasks import task


class DiffusionTask(task.Task):
  """Learns p(image) from batches {'image': [B, H, W, C] in [-1, 1]}."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.model = models.build(config.model)
    self.schedule = diffusion.make_schedule(config.task.schedule, config.task.timesteps)
    self.sampler = config.task.sampler
    if self.sampler not in ('ddim', 'ddpm'):
      raise ValueError(f'config.task.sampler={self.sampler!r}; use "ddim" or "ddpm".')
    self.sample_steps = config.task.sample_steps
    self.ddim_eta = config.task.ddim_eta
    self.num_samples = config.task.num_samples

  def init(self, rng, batch):
    x = jnp.zeros((1,) + tuple(batch['image'].shape[1:]), jnp.float32)
    return self.model.init({'params': rng}, x, jnp.zeros((1,), jnp.int32))['params']

  def loss(self, params, batch, rng):
    model_rng, dropout_rng = jax.random.split(rng)
    eps_fn = lambda x, t: self.model.apply({'params': params}, x, t, train=True, rngs={'dropout': dropout_rng})
    per_example = diffusion.eps_loss(eps_fn, self.schedule, batch['image'], model_rng)
    loss = jnp.mean(per_example)
    return loss, {}

  def sample(self, params, rng, shape):
    """Images of `shape` [N, H, W, C] in [-1, 1] from the reverse process."""
    eps_fn = lambda x, t: self.model.apply({'params': params}, x, t)
    if self.sampler == 'ddpm':
      return diffusion.ddpm_sample(eps_fn, self.schedule, rng, shape)
    return diffusion.ddim_sample(eps_fn, self.schedule, rng, shape, num_steps=self.sample_steps, eta=self.ddim_eta)

  def evaluate(self, params, rng, batch):
    shape = (self.num_samples,) + batch['image'].shape[1:]
    return {'samples': self.sample(params, rng, shape)}

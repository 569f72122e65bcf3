"""A GAN for CT slices on the one trainer: both networks updated in the same pure, jitted step.

`grads` returns `{'gen': ∇_gen L_G, 'disc': ∇_disc (L_D + R1)}` computed at the same parameters
(simultaneous updates); the trainer's optimizer (`config.optim.groups.gen` / `.disc` for separate learning
rates and Adam β) applies both, and its EMA of the parameters is the EMA generator that sampling, export and
evaluation use. Losses and R1 are in `aigc_jax/adversarial.py`.

config.task: gan_loss (non_saturating | hinge), r1_gamma (γ; 0 disables).
"""

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax.objectives import adversarial
from aigc_jax import models
from aigc_jax.tasks import task


class GANTask(task.Generator):

  def __init__(self, config: ml_collections.ConfigDict):
    if config.model.name != 'dcgan':
      raise ValueError(f'config.task.name="gan" needs config.model.name="dcgan", not {config.model.name!r}.')
    if config.model.image_size != config.data.image_size:
      raise ValueError(f'config.model.image_size={config.model.image_size} differs from config.data.image_size='
                       f'{config.data.image_size}; set them equal.')
    adversarial.check_loss(config.task.gan_loss)
    self.model = models.build(config.model)
    self.latent_dim = config.model.latent_dim
    self.kind, self.r1_gamma = config.task.gan_loss, config.task.r1_gamma

  def init(self, rng, batch):
    return self.model.init({'params': rng}, jnp.zeros((1, self.latent_dim), jnp.float32))['params']

  def _generate(self, gen, z):
    return self.model.apply({'params': {'gen': gen}}, z, method='generate')

  def _discriminate(self, disc, x):
    return self.model.apply({'params': {'disc': disc}}, x, method='discriminate')

  def grads(self, params, batch, rng):
    real = batch['image']
    z = jax.random.normal(rng, (real.shape[0], self.latent_dim))
    fake = jax.lax.stop_gradient(self._generate(params['gen'], z))
    d_loss_fn = lambda disc: adversarial.discriminator_objective(
        lambda x: self._discriminate(disc, x), real, fake, self.kind, self.r1_gamma)

    def g_loss_fn(gen):
      return adversarial.generator_loss(self._discriminate(params['disc'], self._generate(gen, z)), self.kind)

    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(params['disc'])
    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(params['gen'])
    # 'loss' (the trainer's headline figure) is the sum; the two halves are logged on their own.
    return {'gen': g_grads, 'disc': d_grads}, {'loss': d_metrics['d_loss'] + g_loss, 'g_loss': g_loss,
                                               **d_metrics}

  def loss(self, params, batch, rng):
    raise NotImplementedError('A GAN has no single loss to descend; the trainer calls GANTask.grads.')

  def sample(self, params, rng, shape, labels=None):
    del labels
    z = jax.random.normal(rng, (shape[0], self.latent_dim))
    return self._generate(params['gen'], z)

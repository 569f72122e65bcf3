"""The first stage of latent diffusion: a KL autoencoder trained with L1 + β·KL, optionally plus a patch
adversarial term (the discriminator and losses of the GAN).

    L = mean|x − D(z)| + kl_weight · mean KL(q(z|x) ‖ N(0, I)) + adv_weight · L_G(patch D(D(z)))

z is drawn from q(z|x) with the reparameterization trick. With `adv_weight` > 0 the parameters are
{'vae', 'disc'} and `grads` also returns the discriminator's (hinge or non-saturating, + R1), updated in
the same step; otherwise {'vae'} and the default gradient of L.

The `ct_reconstruction` evaluator and `aigc_jax.evaluate` show reconstructions of held-out slices (input |
reconstruction); `ct_samples` shows samples decoded from the prior N(0, I) (a VAE's own generative samples;
the LDM is what makes good ones).
"""

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax import models
from aigc_jax.models import gan
from aigc_jax.objectives import adversarial
from aigc_jax.tasks import task


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) ‖ N(0, 1)) per element."""
  return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


class VAETask(task.Generator):

  def __init__(self, config: ml_collections.ConfigDict):
    if config.model.name != 'kl_autoencoder':
      raise ValueError(f'config.task.name="vae" needs config.model.name="kl_autoencoder", not '
                       f'{config.model.name!r}.')
    t = config.task
    self.model = models.build(config.model)
    self.kl_weight, self.adv_weight, self.r1_gamma = t.kl_weight, t.adv_weight, t.r1_gamma
    self.kind = t.gan_loss
    adversarial.check_loss(self.kind)
    self.disc = gan.Discriminator(tuple(t.disc_channels), patch=True)

  def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """[N, H, W, C] images → the shape of their latents."""
    n, h, w, _ = image_shape
    f = self.model.downsampling
    if h % f or w % f:
      raise ValueError(f'Images of {h}x{w} do not divide by the autoencoder downsampling {f} '
                       '(2^(len(config.model.channels) - 1)).')
    return (n, h // f, w // f, self.model.latent_channels)

  def init(self, rng, batch):
    vae_rng, disc_rng = jax.random.split(rng)
    x = jnp.zeros((1,) + tuple(batch['image'].shape[1:]), jnp.float32)
    params = {'vae': self.model.init({'params': vae_rng}, x)['params']}
    if self.adv_weight:
      params['disc'] = self.disc.init({'params': disc_rng}, x)['params']
    return params

  def encode(self, params, x):
    """(mean, logvar) of q(z | x)."""
    return self.model.apply({'params': params['vae']}, x, method='encode')

  def decode(self, params, z):
    return self.model.apply({'params': params['vae']}, z, method='decode')

  def reconstruct(self, params, x):
    return jnp.clip(self.decode(params, self.encode(params, x)[0]), -1.0, 1.0)

  def _vae_loss(self, vae, disc, x, rng):
    mean, logvar = self.model.apply({'params': vae}, x, method='encode')
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
    recon = self.model.apply({'params': vae}, z, method='decode')
    rec, kl = jnp.mean(jnp.abs(recon - x)), jnp.mean(kl_divergence(mean, logvar))
    metrics = {'l1': rec, 'kl': kl}
    loss = rec + self.kl_weight * kl
    if disc is not None:
      g = adversarial.generator_loss(self.disc.apply({'params': disc}, recon), self.kind)
      loss, metrics = loss + self.adv_weight * g, {**metrics, 'g_loss': g}
    return loss, (metrics, recon)

  def loss(self, params, batch, rng):
    loss, (metrics, _) = self._vae_loss(params['vae'], params.get('disc'), batch['image'], rng)
    return loss, metrics

  def grads(self, params, batch, rng):
    if not self.adv_weight:
      return super().grads(params, batch, rng)
    x = batch['image']
    (loss, (metrics, recon)), vae_grads = jax.value_and_grad(self._vae_loss, has_aux=True)(
        params['vae'], params['disc'], x, rng)
    fake = jax.lax.stop_gradient(recon)

    d_loss_fn = lambda disc: adversarial.discriminator_objective(
        lambda img: self.disc.apply({'params': disc}, img), x, fake, self.kind, self.r1_gamma)
    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(params['disc'])
    return {'vae': vae_grads, 'disc': d_grads}, {'loss': loss, 'd_loss': d_metrics['d_loss'], **metrics}

  def sample(self, params, rng, shape, labels=None):
    """Decoded draws from the prior N(0, I): the VAE alone as a generator."""
    del labels
    z = jax.random.normal(rng, self.latent_shape(tuple(shape)))
    return jnp.clip(self.decode(params, z), -1.0, 1.0)

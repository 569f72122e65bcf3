"""Adversarial losses and the R1 penalty, pure functions of discriminator logits; shared by the GAN and the
VAE's optional patch-adversarial term.

Non-saturating (Goodfellow et al. 2014):  L_D = softplus(−D(x)) + softplus(D(G(z))),  L_G = softplus(−D(G(z)))
Hinge (Lim & Ye 2017; Miyato et al. 2018): L_D = relu(1 − D(x)) + relu(1 + D(G(z))),  L_G = −D(G(z))
R1 (Mescheder et al. 2018): (γ/2)·E‖∇ₓD(x)‖² on real images only, which keeps the discriminator from pushing
the generator's gradients to infinity near the data.
"""

from typing import Callable

import jax
import jax.numpy as jnp

LOSSES = ('non_saturating', 'hinge')


def check_loss(name: str, field: str = 'config.task.gan_loss') -> None:
  if name not in LOSSES:
    raise ValueError(f'{field}={name!r}; use one of {LOSSES}.')


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, kind: str) -> jax.Array:
  if kind == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str) -> jax.Array:
  if kind == 'hinge':
    return -jnp.mean(fake_logits)
  return jnp.mean(jax.nn.softplus(-fake_logits))


def r1_penalty(disc_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """E‖∇ₓ D(x)‖² over the real batch (per example: the sum over pixels, then the mean over examples)."""
  grads = jax.grad(lambda x: jnp.sum(disc_fn(x)))(real)  # examples are independent: one grad for all
  return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))

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


def discriminator_objective(disc_fn: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                            kind: str, r1_gamma: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_D + (γ/2)·R1 for a discriminator `disc_fn` (differentiate it w.r.t. the discriminator's parameters;
  `fake` must already be stop-gradient), and its parts as metrics."""
  real_logits, fake_logits = disc_fn(real), disc_fn(fake)
  loss = discriminator_loss(real_logits, fake_logits, kind)
  r1 = r1_penalty(disc_fn, real) if r1_gamma else jnp.zeros([])
  return loss + 0.5 * r1_gamma * r1, {'d_loss': loss, 'r1': r1, 'd_real': jnp.mean(real_logits),
                                      'd_fake': jnp.mean(fake_logits)}

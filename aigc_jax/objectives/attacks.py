"""Adversarial perturbations of a model's input: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) in
the L∞ and L2 norms, and TRADES' divergence (Zhang et al. 2019). Pure functions of an explicit loss and key.

Inputs are images in the window's [-1, 1]; perturbed images stay there (a CT window clips too). Attack sizes
are given in window units here; callers convert from Hounsfield units (`window_units`).
"""

from typing import Callable

import jax
import jax.numpy as jnp

NORMS = ('linf', 'l2')


def window_units(hu: float, window_lo: float, window_hi: float) -> float:
  """A size of `hu` Hounsfield units in the [-1, 1] units of the window [lo, hi]."""
  return 2.0 * float(hu) / (float(window_hi) - float(window_lo))


def _per_example_norm(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def project(delta: jax.Array, eps: float, norm: str) -> jax.Array:
  """`delta` [N, …] moved into the per-example ball of radius `eps`."""
  if norm == 'linf':
    return jnp.clip(delta, -eps, eps)
  if norm == 'l2':
    return delta * jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), 1e-12))
  raise ValueError(f'attack norm {norm!r}: choose one of {NORMS}.')


def _ascent(grad: jax.Array, norm: str) -> jax.Array:
  """The steepest-ascent direction of unit size in `norm`."""
  if norm == 'linf':
    return jnp.sign(grad)
  return grad / jnp.maximum(_per_example_norm(grad), 1e-12)


def pgd(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, eps: float | jax.Array, norm: str = 'linf',
        steps: int = 10, step_size: float | None = None, rng: jax.Array | None = None) -> jax.Array:
  """An input within `eps` of `x` (in `norm`, per example) that raises `loss_fn`, by projected gradient ascent.

  Args:
    loss_fn: x → the scalar to raise: the sum of per-example losses, so each example's gradient is its own.
    x: [N, …] inputs in [-1, 1].
    eps: the ball's radius in window units (for L2: of the whole example).
    steps: ascent steps; 1 with step_size = eps and no rng is FGSM.
    step_size: per step (default 2.5 eps / steps, Madry et al.).
    rng: a random start inside the ball (None: start at x).
  Returns:
    x + δ, clipped to [-1, 1], with no gradient flowing back through the search.
  """
  if isinstance(eps, (int, float)) and eps <= 0:  # (a traced eps, one compile for every size, skips this)
    return x
  if norm not in NORMS:
    raise ValueError(f'attack norm {norm!r}: choose one of {NORMS}.')
  x = jax.lax.stop_gradient(x)
  step_size = 2.5 * eps / steps if step_size is None else step_size
  delta = jnp.zeros_like(x)
  if rng is not None:
    start = jax.random.uniform(rng, x.shape, x.dtype, -1.0, 1.0)
    delta = project(eps * start, eps, norm)

  def body(_, d):
    g = jax.grad(lambda dd: loss_fn(jnp.clip(x + dd, -1.0, 1.0)))(d)
    return project(d + step_size * _ascent(g, norm), eps, norm)
  delta = jax.lax.fori_loop(0, steps, body, delta)
  return jax.lax.stop_gradient(jnp.clip(x + delta, -1.0, 1.0))


def fgsm(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, eps: float | jax.Array) -> jax.Array:
  """One signed-gradient step of size `eps` (L∞)."""
  return pgd(loss_fn, x, eps=eps, norm='linf', steps=1, step_size=eps)


def kl_divergence(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
  """KL(softmax(p) ‖ softmax(q)) per row: TRADES' robustness term."""
  logp, logq = jax.nn.log_softmax(logits_p), jax.nn.log_softmax(logits_q)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)

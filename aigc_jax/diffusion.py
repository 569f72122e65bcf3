"""Denoising diffusion as pure functions: noise schedule, forward process, loss, DDPM and DDIM samplers.

Notation follows Ho et al. (2020) and Song et al. (2021): x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, with
t = 0 … T−1 and the model predicting ε. Samplers are `jax.lax.scan` loops, so a whole chain is one
compiled program; they take the denoiser as a function `eps_fn(x_t, t) -> ε̂`.
"""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


@flax.struct.dataclass
class Schedule:
  betas: jax.Array           # [T]
  alphas_cumprod: jax.Array  # [T], ᾱ_t

  @property
  def timesteps(self) -> int:
    return self.betas.shape[0]


def make_schedule(kind: str, timesteps: int) -> Schedule:
  """Linear (Ho et al.) or cosine (Nichol & Dhariwal) betas, computed in float64 then stored float32."""
  if kind == 'linear':
    scale = 1000.0 / timesteps  # keeps the same endpoints' SNR when T differs from 1000
    betas = np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
  elif kind == 'cosine':
    s = 0.008
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
  else:
    raise ValueError(f'config.task.schedule={kind!r} is not a schedule; use "linear" or "cosine".')
  alphas_cumprod = np.cumprod(1.0 - betas)
  return Schedule(betas=jnp.asarray(betas, jnp.float32), alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32))


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """Draws x_t ~ q(x_t | x_0) for integer timesteps t [B]."""
  a = _bcast(schedule.alphas_cumprod[t], x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def eps_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, rng: jax.Array) -> jax.Array:
  """The simple DDPM objective E_t,ε ||ε − ε̂(x_t, t)||², averaged over pixels; returns one value per example."""
  t_rng, n_rng = jax.random.split(rng)
  t = jax.random.randint(t_rng, (x0.shape[0],), 0, schedule.timesteps)
  noise = jax.random.normal(n_rng, x0.shape, x0.dtype)
  pred = eps_fn(q_sample(schedule, x0, t, noise), t)
  return jnp.mean(jnp.square(pred - noise), axis=tuple(range(1, x0.ndim)))


def _predict_x0(schedule, x, t, eps, clip):
  a = _bcast(schedule.alphas_cumprod[t], x)
  x0 = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
  return jnp.clip(x0, -1.0, 1.0) if clip else x0


def ddim_sample(eps_fn: EpsFn, schedule: Schedule, rng: jax.Array, shape: tuple[int, ...], *,
                num_steps: int, eta: float = 0.0, clip_x0: bool = True) -> jax.Array:
  """DDIM (Song et al. 2021) over `num_steps` evenly spaced timesteps; eta=1 matches DDPM's variance.

  Returns x_0 samples of `shape`, clipped to [-1, 1] when `clip_x0` (the data's range).
  """
  T = schedule.timesteps
  # "Leading" spacing (0, T/n, 2T/n, …), as in the DDIM paper's code: it never starts from t = T−1, where a
  # cosine schedule's ᾱ is ~1e-9 and the first x0 estimate would amplify ε̂'s error ~10⁴-fold.
  if not 1 <= num_steps <= T:
    raise ValueError(f'DDIM num_steps={num_steps} must be in 1..{T} (config.task.sample_steps).')
  ts = (np.arange(num_steps) * (T // num_steps)).astype(np.int32)[::-1]
  t_prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)
  init_rng, loop_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape, jnp.float32)
  a_all = jnp.concatenate([schedule.alphas_cumprod, jnp.ones([1], jnp.float32)])  # index -1 -> ᾱ = 1

  def step(x, inputs):
    t, tp, key = inputs
    tb = jnp.full((shape[0],), t, jnp.int32)
    eps = eps_fn(x, tb)
    x0 = _predict_x0(schedule, x, tb, eps, clip_x0)
    if clip_x0:  # re-derive ε from the clipped x0 so the update stays on the data's range
      a = schedule.alphas_cumprod[t]
      eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)
    a, ap = schedule.alphas_cumprod[t], a_all[tp]
    sigma = eta * jnp.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
    noise = jax.random.normal(key, shape, jnp.float32)
    x = jnp.sqrt(ap) * x0 + jnp.sqrt(jnp.maximum(1 - ap - sigma ** 2, 0.0)) * eps + sigma * noise
    return x, None

  keys = jax.random.split(loop_rng, num_steps)
  x, _ = jax.lax.scan(step, x, (jnp.asarray(ts), jnp.asarray(t_prev), keys))
  return x


def ddpm_sample(eps_fn: EpsFn, schedule: Schedule, rng: jax.Array, shape: tuple[int, ...], *,
                clip_x0: bool = True) -> jax.Array:
  """Ancestral sampling through all T steps with the posterior variance β̃_t (Ho et al. eq. 6-7)."""
  T = schedule.timesteps
  betas, a_bar = schedule.betas, schedule.alphas_cumprod
  a_prev = jnp.concatenate([jnp.ones([1], jnp.float32), a_bar[:-1]])
  init_rng, loop_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape, jnp.float32)

  def step(x, inputs):
    t, key = inputs
    tb = jnp.full((shape[0],), t, jnp.int32)
    x0 = _predict_x0(schedule, x, tb, eps_fn(x, tb), clip_x0)
    # Posterior mean of q(x_{t-1} | x_t, x_0), in terms of x0 and x_t.
    c0 = jnp.sqrt(a_prev[t]) * betas[t] / (1 - a_bar[t])
    ct = jnp.sqrt(1 - betas[t]) * (1 - a_prev[t]) / (1 - a_bar[t])
    var = betas[t] * (1 - a_prev[t]) / (1 - a_bar[t])
    noise = jax.random.normal(key, shape, jnp.float32)
    x = c0 * x0 + ct * x + jnp.where(t > 0, jnp.sqrt(var), 0.0) * noise
    return x, None

  keys = jax.random.split(loop_rng, T)
  x, _ = jax.lax.scan(step, x, (jnp.arange(T - 1, -1, -1, dtype=jnp.int32), keys))
  return x

"""Denoising diffusion as pure functions: noise schedule, forward process, loss, DDPM and DDIM samplers.

Notation follows Ho et al. (2020) and Song et al. (2021): x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, with
t = 0 … T−1. The model predicts one of (`prediction`): ε (Ho et al.), x_0, or v = sqrt(ᾱ) ε − sqrt(1 − ᾱ) x_0
(Salimans & Ho 2022), which stays well defined when a schedule is rescaled to zero terminal SNR (Lin et al.
2024, ᾱ_{T−1} = 0). Samplers are `jax.lax.scan` loops, so a whole chain is one compiled program; they take the
denoiser as a function `model_fn(x_t, t) -> prediction`.
"""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
PREDICTIONS = ('eps', 'x0', 'v')


@flax.struct.dataclass
class Schedule:
  betas: jax.Array           # [T]
  alphas_cumprod: jax.Array  # [T], ᾱ_t

  @property
  def timesteps(self) -> int:
    return self.betas.shape[0]


def make_schedule(kind: str, timesteps: int, *, zero_terminal_snr: bool = False) -> Schedule:
  """Linear (Ho et al.) or cosine (Nichol & Dhariwal) betas, computed in float64 then stored float32.

  zero_terminal_snr: rescale sqrt(ᾱ) linearly so that ᾱ_{T−1} = 0 exactly and ᾱ_0 is unchanged (Lin et al.
  2024): training then sees pure noise at the last step, as sampling starts from it. Needs 'v' or 'x0'
  prediction (ε carries no information about x_0 there).
  """
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
  if zero_terminal_snr:
    root = np.sqrt(alphas_cumprod)
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    alphas_cumprod = root ** 2
    betas = 1.0 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])
  return Schedule(betas=jnp.asarray(betas, jnp.float32), alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32))


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """Draws x_t ~ q(x_t | x_0) for integer timesteps t [B]."""
  a = _bcast(schedule.alphas_cumprod[t], x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def check_prediction(prediction: str, schedule: Schedule) -> None:
  if prediction not in PREDICTIONS:
    raise ValueError(f'config.task.prediction={prediction!r}; use one of {PREDICTIONS}.')
  if prediction == 'eps' and float(schedule.alphas_cumprod[-1]) == 0.0:
    raise ValueError('A zero-terminal-SNR schedule cannot be learned with ε prediction (x_0 is lost at the last '
                     'step); set config.task.prediction to "v" or "x0".')


def target(prediction: str, x0: jax.Array, eps: jax.Array, a: jax.Array) -> jax.Array:
  """What the model is trained to output, for ᾱ = a broadcast to x0."""
  if prediction == 'eps':
    return eps
  if prediction == 'x0':
    return x0
  return jnp.sqrt(a) * eps - jnp.sqrt(1.0 - a) * x0


def to_x0_eps(prediction: str, out: jax.Array, x: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x̂_0, ε̂) from the model's output at x_t with ᾱ = a."""
  if prediction == 'eps':
    return (x - jnp.sqrt(1.0 - a) * out) / jnp.sqrt(a), out
  if prediction == 'x0':
    return out, (x - jnp.sqrt(a) * out) / jnp.sqrt(jnp.maximum(1.0 - a, 1e-12))
  return jnp.sqrt(a) * x - jnp.sqrt(1.0 - a) * out, jnp.sqrt(1.0 - a) * x + jnp.sqrt(a) * out


def loss(model_fn: EpsFn, schedule: Schedule, x0: jax.Array, rng: jax.Array, *, prediction: str = 'eps',
         t: jax.Array | None = None) -> jax.Array:
  """E_t,ε ||target − model(x_t, t)||² with t uniform over 0…T−1, averaged over pixels; one value per example.

  With ε prediction this is the simple DDPM objective; the v and x_0 targets weight the timesteps differently.
  `t` (a step, or one per example) fixes the timestep instead of drawing it: the membership audit scores a
  model at chosen timesteps, where a denoising loss tells training images apart best.
  """
  t_rng, n_rng = jax.random.split(rng)
  if t is None:
    t = jax.random.randint(t_rng, (x0.shape[0],), 0, schedule.timesteps)
  else:
    t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), (x0.shape[0],))
  noise = jax.random.normal(n_rng, x0.shape, x0.dtype)
  pred = model_fn(q_sample(schedule, x0, t, noise), t)
  goal = target(prediction, x0, noise, _bcast(schedule.alphas_cumprod[t], x0))
  return jnp.mean(jnp.square(pred - goal), axis=tuple(range(1, x0.ndim)))


def eps_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, rng: jax.Array) -> jax.Array:
  """The simple DDPM objective E_t,ε ||ε − ε̂(x_t, t)||² (`loss` with ε prediction)."""
  return loss(eps_fn, schedule, x0, rng, prediction='eps')


def _predict_x0(schedule, x, t, out, clip, prediction='eps'):
  x0, _ = to_x0_eps(prediction, out, x, _bcast(schedule.alphas_cumprod[t], x))
  return jnp.clip(x0, -1.0, 1.0) if clip else x0


def timesteps(T: int, num_steps: int, spacing: str = 'leading') -> np.ndarray:
  """The `num_steps` timesteps a DDIM chain visits, high to low.

  'leading' (0, T/n, 2T/n, …), as in the DDIM paper's code: it never starts from t = T−1, where a cosine
  schedule's ᾱ is ~1e-9 and an ε model's first x_0 estimate would amplify its error ~10⁴-fold. 'trailing'
  (…, T−1−T/n, T−1) starts at the last step: the right choice with a zero-terminal-SNR schedule and v or x_0
  prediction, whose first estimate is then exact in expectation (Lin et al. 2024).
  """
  if not 1 <= num_steps <= T:
    raise ValueError(f'DDIM num_steps={num_steps} must be in 1..{T} (config.task.sample_steps).')
  if spacing == 'leading':
    ts = np.arange(num_steps) * (T // num_steps)
  elif spacing == 'trailing':
    # round(k·T/n) − 1 for k = 1…n, as diffusers' "trailing" (halves to even): k·T/n is one correctly rounded
    # division, exact at the halves, where a float arange(T, 0, −T/n) accumulates and can yield n + 1 values.
    k = np.arange(1, num_steps + 1, dtype=np.int64)
    ts = np.round(k * T / num_steps).astype(np.int64) - 1
  else:
    raise ValueError(f'config.task.timestep_spacing={spacing!r}; use "leading" or "trailing".')
  return ts.astype(np.int32)[::-1]


def ddim_sample(eps_fn: EpsFn, schedule: Schedule, rng: jax.Array, shape: tuple[int, ...], *,
                num_steps: int, eta: float = 0.0, clip_x0: bool = True, prediction: str = 'eps',
                spacing: str = 'leading') -> jax.Array:
  """DDIM (Song et al. 2021) over `num_steps` timesteps (`timesteps`); eta=1 matches DDPM's variance.

  `eps_fn` returns the model's `prediction` (ε, x_0 or v). Returns x_0 samples of `shape`, clipped to
  [-1, 1] when `clip_x0` (the data's range).
  """
  ts = timesteps(schedule.timesteps, num_steps, spacing)
  t_prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)
  init_rng, loop_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape, jnp.float32)
  a_all = jnp.concatenate([schedule.alphas_cumprod, jnp.ones([1], jnp.float32)])  # index -1 -> ᾱ = 1

  def step(x, inputs):
    t, tp, key = inputs
    tb = jnp.full((shape[0],), t, jnp.int32)
    a = schedule.alphas_cumprod[t]
    x0, eps = to_x0_eps(prediction, eps_fn(x, tb), x, a)
    if clip_x0:  # re-derive ε from the clipped x0 so the update stays on the data's range
      x0 = jnp.clip(x0, -1.0, 1.0)
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
                clip_x0: bool = True, prediction: str = 'eps') -> jax.Array:
  """Ancestral sampling through all T steps with the posterior variance β̃_t (Ho et al. eq. 6-7)."""
  T = schedule.timesteps
  betas, a_bar = schedule.betas, schedule.alphas_cumprod
  a_prev = jnp.concatenate([jnp.ones([1], jnp.float32), a_bar[:-1]])
  init_rng, loop_rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape, jnp.float32)

  def step(x, inputs):
    t, key = inputs
    tb = jnp.full((shape[0],), t, jnp.int32)
    x0 = _predict_x0(schedule, x, tb, eps_fn(x, tb), clip_x0, prediction)
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

"""The train state: one pytree holding everything a step changes, so it checkpoints and shards as a unit."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 scalar: optimizer steps taken
  params: Any
  opt_state: optax.OptState
  ema_params: Any        # exponential moving average of params, used for sampling and evaluation
  rng: jax.Array         # base key; step t uses fold_in(rng, t), so resuming replays the same randomness


def create(params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=jax.tree.map(jnp.copy, params), rng=rng)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """The EMA decay used after optimizer step `step` (0-based): min(decay, (1 + t) / (10 + t)).

  Without a warm-up the EMA starts at the random init and forgets it only at rate 1 − decay: at 0.9999 the
  EMA after 5,000 steps is still 61% initial weights. The warm-up lets it follow the params early on and
  reach the configured decay after ~10 / (1 − decay) steps (as in TF's ExponentialMovingAverage num_updates).
  """
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def ema_update(ema: Any, params: Any, decay: float | jax.Array) -> Any:
  """ema ← decay·ema + (1 − decay)·params; decay 0 makes the EMA track params exactly."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)

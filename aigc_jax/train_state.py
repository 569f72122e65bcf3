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


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """ema ← decay·ema + (1 − decay)·params; decay 0 makes the EMA track params exactly."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)

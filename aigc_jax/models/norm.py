"""GroupNorm with per-channel statistics first: the same function as `flax.linen.GroupNorm`, faster on XLA:CPU.

Flax reshapes [B, H, W, C] to [B, H, W, G, C/G] and reduces over three non-adjacent axes; XLA:CPU lowers
that to slow strided reductions and extra copies, forward and backward. Here the spatial sums are taken
per channel first (a reduction over the leading spatial axes, contiguous in NHWC), groups are formed on
the tiny [B, C] result, and the normalisation becomes one per-(image, channel) scale and shift that fuses
with the activation that follows. Measured at [16, 64, 64, 64] with SiLU: forward 29 -> 6.5 ms, forward +
backward 47 -> 19 ms. Parameters (`scale`, `bias`) and the default name (`GroupNorm_0`) are flax's, so
checkpoints load either way.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
  num_groups: int = 32
  epsilon: float = 1e-6  # flax's default
  dtype: jnp.dtype | None = None  # output dtype; statistics are always float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, c, g = x.shape[0], x.shape[-1], self.num_groups
    if c % g:
      raise ValueError(f'GroupNorm: {c} channels do not split into {g} groups; choose model.norm_groups '
                       f'that divides every level\'s channel count.')
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    xf = x.astype(jnp.float32)
    spatial = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(xf, spatial).reshape(b, g, c // g).mean(-1)  # [B, G]
    mean_sq = jnp.mean(jnp.square(xf), spatial).reshape(b, g, c // g).mean(-1)
    # E[x²] - E[x]² as flax's fast variance; clamp the rounding below zero.
    rstd = jax.lax.rsqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0) + self.epsilon)
    a = scale * jnp.repeat(rstd, c // g, axis=-1)  # [B, C]
    shift = bias - jnp.repeat(mean, c // g, axis=-1) * a
    bcast = (b,) + (1,) * len(spatial) + (c,)
    y = xf * a.reshape(bcast) + shift.reshape(bcast)
    return y.astype(self.dtype or x.dtype)

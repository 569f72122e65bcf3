"""Layers every model family shares: convolutions and dense layers whose kernels carry logical axis names
(so `config.mesh.rules` shards them, see sharding.py), and multi-head attention with a CPU- and a GPU-fast
path. The U-Net, the autoencoder, the GAN and the restoration nets build on these; so will a transformer.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


# Logical names of kernel dimensions; `config.mesh.rules` maps them to mesh axes (see sharding.py).
CONV_AXES = (None, None, 'conv_in', 'conv_out')
DENSE_AXES = ('embed', 'mlp')
QKV_AXES = ('embed', 'heads', 'kv')
OUT_AXES = ('heads', 'kv', 'embed')
_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros


def conv(features: int, kernel=(3, 3), *, dtype, zero_init: bool = False, **kw) -> nn.Conv:
  init = _zeros if zero_init else _lecun
  return nn.Conv(features, kernel, dtype=dtype, kernel_init=nn.with_logical_partitioning(init, CONV_AXES), **kw)


def dense(features: int, *, dtype, **kw) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=nn.with_logical_partitioning(_lecun, DENSE_AXES), **kw)


ATTENTION = ('auto', 'einsum', 'dot_product')


def attend(q: jax.Array, k: jax.Array, v: jax.Array, impl: str = 'auto', images_per_pass: int = 0,
           mask: jax.Array | None = None) -> jax.Array:
  """softmax(q k^T / sqrt(d)) v over q [B, T, heads, d] and k, v [B, S, heads, d].

  `mask` (bool, broadcastable to [B, heads, T, S]; True = may attend) hides keys: a causal language model's
  future tokens, other documents packed into the same row, an empty KV-cache slot. A query that may attend
  to nothing (padding) gets an average of the values, not NaN.

  'dot_product' is `jax.nn.dot_product_attention` (cuDNN's fused flash attention on GPUs that have it);
  'einsum' is the plain formula with the 1/sqrt(d) folded into q, ~1.5x faster on XLA:CPU (STACK.md);
  'auto' takes einsum on CPU and dot_product elsewhere. `images_per_pass` > 0 (einsum) loops over groups of
  that many images (`lax.map`), the same result with a working set that fits in a CPU's cache.
  """
  if impl not in ATTENTION:
    raise ValueError(f'config.model.attention={impl!r}; choose one of {ATTENTION}.')
  if impl == 'auto':
    impl = 'einsum' if jax.default_backend() == 'cpu' else 'dot_product'
  if impl == 'dot_product':
    return jax.nn.dot_product_attention(q, k, v, mask=mask)
  if mask is not None:
    return _einsum_attention(q, k, v, mask)
  b = q.shape[0]
  if 0 < images_per_pass < b and b % images_per_pass == 0:
    passes = b // images_per_pass
    # Pass j takes images j, j + passes, …: strided, so a batch sharded in blocks keeps every shard busy.
    split = lambda a: a.reshape((images_per_pass, passes) + a.shape[1:]).swapaxes(0, 1)
    out = jax.lax.map(lambda qkv: _einsum_attention(*qkv), (split(q), split(k), split(v)))
    return out.swapaxes(0, 1).reshape(q.shape)
  return _einsum_attention(q, k, v)


def attention_weights(q: jax.Array, k: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """softmax(q k^T / sqrt(d)) [B, heads, T, S], float32, `mask` as in `attend` (an all-masked row: uniform)."""
  q = q * (q.shape[-1] ** -0.5)
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32)  # softmax in float32: bf16-safe
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)  # finite: an all-masked row stays finite
  return jax.nn.softmax(logits, axis=-1)


def _einsum_attention(q, k, v, mask=None):
  return jnp.einsum('bhqk,bkhd->bqhd', attention_weights(q, k, mask).astype(v.dtype), v)

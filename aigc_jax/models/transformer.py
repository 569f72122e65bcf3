"""The transformer of the language models: pre-LayerNorm blocks (GPT-2's), shared by a decoder-only causal
model and a bidirectional (BERT-style, masked-LM) encoder; `causal` is the only difference.

Rows are packed: several documents share one row of `tokens`, told apart by `segment_ids` (1, 2, … per row;
0 is padding), each with positions that restart at 0. A token attends only to tokens of its own document (and,
when causal, only to earlier ones), so packing changes nothing a document's logits depend on.

Every kernel carries logical axis names (`embed`, `mlp`, `heads`, `kv`, `vocab`; `config.mesh.rules` maps
them to mesh axes), so FSDP and tensor parallelism apply as to the imaging models. The output layer is the
token embedding, transposed (GPT-2 and BERT tie them).

Decoding uses an explicit KV cache ({'k', 'v'}: [depth, B, S, heads, head_dim]), passed in and returned: pure,
so the whole generation loop jits (`aigc_jax/models/decoding.py`).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models import layers

EMBED_AXES = ('vocab', 'embed')
MLP_OUT_AXES = ('mlp', 'embed')


def _init(std: float, axes):
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


class Block(nn.Module):
  """Attention then MLP, each after a LayerNorm and added to the residual stream."""
  heads: int
  head_dim: int
  mlp_dim: int
  out_std: float
  dtype: Any
  attention: str

  @nn.compact
  def __call__(self, x, mask, kv=None, index=None):
    """x [B, T, W]; mask [B, 1, T, S]; kv: this layer's cache (k, v) [B, S, heads, head_dim] and the
    position `index` where x's keys go (decoding), or None (keys are x's own). Returns (x, new kv or None)."""
    h = nn.LayerNorm(dtype=self.dtype, name='ln_attn')(x)
    proj = lambda name: nn.DenseGeneral((self.heads, self.head_dim), dtype=self.dtype, name=name,
                                        kernel_init=_init(0.02, layers.QKV_AXES))(h)
    q, k, v = proj('query'), proj('key'), proj('value')
    if kv is not None:
      k = jax.lax.dynamic_update_slice_in_dim(kv[0], k.astype(kv[0].dtype), index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(kv[1], v.astype(kv[1].dtype), index, axis=1)
      kv = (k, v)
    a = layers.attend(q, k.astype(q.dtype), v.astype(q.dtype), self.attention, mask=mask)
    x = x + nn.DenseGeneral(x.shape[-1], axis=(-2, -1), dtype=self.dtype, name='out',
                            kernel_init=_init(self.out_std, layers.OUT_AXES))(a)
    h = nn.LayerNorm(dtype=self.dtype, name='ln_mlp')(x)
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name='mlp_in', kernel_init=_init(0.02, layers.DENSE_AXES))(h)
    h = nn.Dense(x.shape[-1], dtype=self.dtype, name='mlp_out',
                 kernel_init=_init(self.out_std, MLP_OUT_AXES))(nn.gelu(h))
    return x + h, kv


def attention_mask(segment_ids: jax.Array, causal: bool) -> jax.Array:
  """[B, 1, L, L]: same document (segment id, 0 = padding) and, when causal, not a later token."""
  same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] != 0)
  if causal:
    n = segment_ids.shape[1]
    same &= jnp.tril(jnp.ones((n, n), bool))[None]
  return same[:, None]


class Transformer(nn.Module):
  """tokens [B, T] → logits [B, T, vocab_size] (and the hidden states, with `hidden=True`).

  Attributes:
    vocab_size, max_len: tokens and positions the embeddings hold.
    width, depth, heads: residual width, number of blocks, attention heads (width % heads == 0).
    mlp_ratio: MLP hidden width / width.
    causal: True for the GPT-style decoder, False for the BERT-style encoder.
    dtype: compute dtype ('float32' or 'bfloat16'); parameters stay float32.
    remat: recompute each block's activations in the backward pass (memory for compute).
    attention: 'auto' | 'einsum' | 'dot_product' (`layers.attend`).
  """
  vocab_size: int
  max_len: int = 512
  width: int = 256
  depth: int = 4
  heads: int = 4
  mlp_ratio: int = 4
  causal: bool = True
  dtype: str = 'float32'
  remat: bool = False
  attention: str = 'auto'

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, *, cache=None, index=None, start=None,
               hidden=False):
    """With `cache` ({'k', 'v'}: [depth, B, S, heads, head_dim]) and `index` (where `tokens` start in it), the
    keys and values of `tokens` are written into the cache, queries see the cache up to themselves, and the
    return value is (logits, new cache). `start` [B] (optional): the cache slot of each row's first real
    token, for prompts of unequal length left-padded to one: slots before it are never attended to, and
    positions count from it. Without a cache: logits (and hidden states, with `hidden`)."""
    if self.width % self.heads:
      raise ValueError(f'config.model.width={self.width} is not divisible by heads={self.heads}.')
    dtype = jnp.dtype(self.dtype)
    b, t = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t) + (0 if index is None else index), (b, t))
      if cache is not None and start is not None:
        positions = jnp.maximum(positions - start[:, None], 0)
    embed = nn.Embed(self.vocab_size, self.width, name='embed', embedding_init=_init(0.02, EMBED_AXES))
    x = embed(tokens) + nn.Embed(self.max_len, self.width, name='pos_embed',
                                 embedding_init=_init(0.01, (None, 'embed')))(positions)
    x = x.astype(dtype)
    if cache is None:
      if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
      mask = attention_mask(segment_ids, self.causal)
    else:
      s = cache['k'].shape[2]
      query_at = index + jnp.arange(t)
      mask = (jnp.arange(s)[None, :] <= query_at[:, None])[None, None]  # earlier or same, never empty slots
      if start is not None:
        # Padding slots are left out; a padding query still sees itself, so no softmax row is empty (NaN).
        real = jnp.arange(s)[None, None, :] >= start[:, None, None]
        mask = mask & (real | (jnp.arange(s)[None, None, :] == query_at[None, :, None]))[:, None]
    block = nn.remat(Block, static_argnums=()) if self.remat else Block
    new_k, new_v = [], []
    for i in range(self.depth):
      kv = None if cache is None else (cache['k'][i], cache['v'][i])
      x, kv = block(self.heads, self.width // self.heads, self.mlp_ratio * self.width,
                    0.02 / (2 * self.depth) ** 0.5, dtype, self.attention, name=f'block_{i}')(x, mask, kv, index)
      if kv is not None:
        new_k.append(kv[0])
        new_v.append(kv[1])
    h = nn.LayerNorm(dtype=dtype, name='ln_final')(x)
    logits = embed.attend(h.astype(jnp.float32))  # tied output layer, float32 logits
    if cache is not None:
      return logits, {'k': jnp.stack(new_k), 'v': jnp.stack(new_v)}
    return (logits, h) if hidden else logits

  def init_cache(self, batch: int, length: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """An empty KV cache for `batch` sequences of up to `length` tokens."""
    shape = (self.depth, batch, length, self.heads, self.width // self.heads)
    return {'k': jnp.zeros(shape, dtype), 'v': jnp.zeros(shape, dtype)}


class TextClassifier(Transformer):
  """The transformer with a classification head on its mean-pooled final states: tokens [B, T] → logits
  [B, num_labels]. Its parameters are the language model's plus 'cls_head', so a pretraining run's
  parameters load into it by name (`config.init_from`) and only the head starts fresh."""
  num_labels: int = 2

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, **kw):
    if segment_ids is None:
      segment_ids = jnp.ones(tokens.shape, jnp.int32)
    _, h = super().__call__(tokens, positions, segment_ids, hidden=True)
    real = (segment_ids != 0).astype(jnp.float32)[..., None]
    pooled = (h.astype(jnp.float32) * real).sum(1) / jnp.maximum(real.sum(1), 1.0)
    return nn.Dense(self.num_labels, name='cls_head', kernel_init=_init(0.02, ('embed', None)))(pooled)

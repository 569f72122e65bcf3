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

The seq2seq family (`EncoderDecoder`) is this decoder with a gated cross-attention layer before each block
(Flamingo's layout) reading a memory: a bidirectional encoder's states of the source text, or (for image →
report) a vision encoder's. The gates start at 0, so at initialization the decoder computes exactly the causal
LM whose parameters it may load by name (`config.init_from`). When decoding, the prompt pass also writes the
memory's keys and values into the cache ('cross_k', 'cross_v') with its validity ('memory_valid' [1, B, S]:
every cache entry keeps the batch on axis 1, so beam search reorders them alike); later steps read them there.
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


class CrossAttention(nn.Module):
  """x + tanh(gate) · attention(LN(x) → memory): queries from the decoder's stream, keys and values from the
  memory [B, S, any width] (or, decoding, from the cache: `kv`). Returns (x, (keys, values))."""
  heads: int
  head_dim: int
  out_std: float
  dtype: Any
  attention: str
  gate_init: float = 0.0

  @nn.compact
  def __call__(self, x, memory, mask, kv=None):
    h = nn.LayerNorm(dtype=self.dtype, name='ln')(x)
    proj = lambda name, y: nn.DenseGeneral((self.heads, self.head_dim), dtype=self.dtype, name=name,
                                           kernel_init=_init(0.02, layers.QKV_AXES))(y)
    q = proj('query', h)
    if memory is not None:
      memory = memory.astype(self.dtype)
      kv = (proj('key', memory), proj('value', memory))
    a = layers.attend(q, kv[0].astype(q.dtype), kv[1].astype(q.dtype), self.attention, mask=mask)
    out = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), dtype=self.dtype, name='out',
                          kernel_init=_init(self.out_std, layers.OUT_AXES))(a)
    # 0 at the start: a decoder loaded from a causal LM is that LM until it learns to listen. From scratch the
    # gate should start open: at 0 the keys, values and output get no gradient and the gate's own is noise
    # (an image reporter trained from scratch kept |gate| < 2e-4 for 500 steps and ignored its images).
    gate = self.param('gate', nn.initializers.constant(self.gate_init), (), jnp.float32)
    return x + jnp.tanh(gate).astype(out.dtype) * out, kv


def attention_mask(segment_ids: jax.Array, causal: bool) -> jax.Array:
  """[B, 1, L, L]: same document (segment id, 0 = padding) and, when causal, not a later token."""
  same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] != 0)
  if causal:
    n = segment_ids.shape[1]
    same &= jnp.tril(jnp.ones((n, n), bool))[None]
  return same[:, None]


def self_attention_weights(model: 'Transformer', params, tokens, positions, segment_ids) -> jax.Array:
  """[depth, B, heads, T, T]: each block's self-attention weights in a forward pass of `model` (a Transformer
  or a TextClassifier, no cache), from the queries and keys that pass computes (captured, not recomputed by a
  second copy of the blocks)."""
  keep = lambda mdl, method: method == '__call__' and mdl.name in ('query', 'key')
  _, state = model.apply({'params': params}, tokens, positions, segment_ids, capture_intermediates=keep,
                         mutable=['intermediates'])
  found = state['intermediates']
  mask = attention_mask(segment_ids, model.causal)
  return jnp.stack([layers.attention_weights(found[f'block_{i}']['query']['__call__'][0],
                                             found[f'block_{i}']['key']['__call__'][0], mask)
                    for i in range(model.depth)])


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
    cross: a cross-attention layer ('cross_<i>') before each block, reading `memory` (EncoderDecoder).
    gate_init: the cross-attention gates' start (tanh(gate) scales what they add): 0 keeps a loaded causal LM
      unchanged at the start; from scratch, open (1.0), or the memory is never learned to be read.
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
  cross: bool = False
  gate_init: float = 0.0

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, *, cache=None, index=None, start=None,
               hidden=False, memory=None, memory_valid=None, embeddings=None):
    """With `cache` ({'k', 'v'}: [depth, B, S, heads, head_dim]) and `index` (where `tokens` start in it), the
    keys and values of `tokens` are written into the cache, queries see the cache up to themselves, and the
    return value is (logits, new cache). `start` [B] (optional): the cache slot of each row's first real
    token, for prompts of unequal length left-padded to one: slots before it are never attended to, and
    positions count from it. Without a cache: logits (and hidden states, with `hidden`).

    With `cross`: `memory` [B, S, W'] and `memory_valid` [B, S] (bool; default all) are what the
    cross-attention reads; decoding, they are given to the prompt pass only (then they live in the cache).

    `embeddings` [B, T, width] (optional) stand in for the token embeddings of `tokens` (which still give the
    shape): integrated gradients walk a path between two sets of embeddings (aigc_jax/evals/tokens.py)."""
    if self.width % self.heads:
      raise ValueError(f'config.model.width={self.width} is not divisible by heads={self.heads}.')
    dtype = jnp.dtype(self.dtype)
    b, t = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t) + (0 if index is None else index), (b, t))
      if cache is not None and start is not None:
        positions = jnp.maximum(positions - start[:, None], 0)
    embed = nn.Embed(self.vocab_size, self.width, name='embed', embedding_init=_init(0.02, EMBED_AXES))
    x = (embed(tokens) if embeddings is None else embeddings) + nn.Embed(self.max_len, self.width, name='pos_embed',
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
    cross = nn.remat(CrossAttention, static_argnums=()) if self.remat else CrossAttention
    if self.cross:
      if memory is not None:
        valid = jnp.ones(memory.shape[:2], bool) if memory_valid is None else memory_valid.astype(bool)
      elif cache is not None and 'cross_k' in cache:
        valid = cache['memory_valid'][0]
      else:
        raise ValueError('this transformer cross-attends (config.model.cross / encoder_decoder) and needs a memory '
                         '(the encoder\'s states) on the first call.')
      cross_mask = valid[:, None, None, :]
    new_k, new_v, cross_k, cross_v = [], [], [], []
    out_std = 0.02 / (2 * self.depth) ** 0.5   # GPT-2: residual outputs scaled by 1/sqrt(2 · depth)
    for i in range(self.depth):
      if self.cross:
        ckv = None if memory is not None else (cache['cross_k'][i], cache['cross_v'][i])
        x, ckv = cross(self.heads, self.width // self.heads, out_std, dtype,
                       self.attention, self.gate_init, name=f'cross_{i}')(x, memory, cross_mask, ckv)
        cross_k.append(ckv[0])
        cross_v.append(ckv[1])
      kv = None if cache is None else (cache['k'][i], cache['v'][i])
      x, kv = block(self.heads, self.width // self.heads, self.mlp_ratio * self.width,
                    out_std, dtype, self.attention, name=f'block_{i}')(x, mask, kv, index)
      if kv is not None:
        new_k.append(kv[0])
        new_v.append(kv[1])
    h = nn.LayerNorm(dtype=dtype, name='ln_final')(x)
    logits = embed.attend(h.astype(jnp.float32))  # tied output layer, float32 logits
    if cache is not None:
      new = {'k': jnp.stack(new_k), 'v': jnp.stack(new_v)}
      if self.cross:
        new.update(cross_k=jnp.stack(cross_k), cross_v=jnp.stack(cross_v), memory_valid=valid[None])
      return logits, new
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
  def __call__(self, tokens, positions=None, segment_ids=None, *, embeddings=None, **kw):
    if segment_ids is None:
      segment_ids = jnp.ones(tokens.shape, jnp.int32)
    _, h = super().__call__(tokens, positions, segment_ids, hidden=True, embeddings=embeddings)
    real = (segment_ids != 0).astype(jnp.float32)[..., None]
    pooled = (h.astype(jnp.float32) * real).sum(1) / jnp.maximum(real.sum(1), 1.0)
    return nn.Dense(self.num_labels, name='cls_head', kernel_init=_init(0.02, ('embed', None)))(pooled)


class EncoderDecoder(Transformer):
  """The seq2seq transformer: source tokens [B, S] → a bidirectional encoder ('encoder', `encoder_depth`
  blocks, its own embeddings) → memory; tokens [B, T] → logits [B, T, vocab] by the causal decoder that
  cross-attends to it. The decoder's parameters have the causal LM's names, so a pretraining run loads into
  it (`config.init_from`); `fresh_params()` start new.

  Training: `model.apply(params, tokens, positions, segment_ids, source=…, source_segment=…)`
  (source_segment: 1 real, 0 padding). Decoding: pass `source` / `source_segment` to the prompt pass only."""
  encoder_depth: int = 0      # 0: depth
  cross: bool = True
  context_keys = ('source', 'source_segment')   # what the task passes from a batch (tasks/language_model.py)

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, *, source=None, source_segment=None, cache=None,
               index=None, start=None, hidden=False):
    memory = valid = None
    if source is not None:
      if source_segment is None:
        source_segment = jnp.ones(source.shape, jnp.int32)
      encoder = Transformer(self.vocab_size, self.max_len, self.width, self.encoder_depth or self.depth,
                            self.heads, self.mlp_ratio, causal=False, dtype=self.dtype, remat=self.remat,
                            attention=self.attention, name='encoder')
      _, memory = encoder(source, None, source_segment, hidden=True)   # its unused logits are compiled away
      valid = source_segment != 0
    return super().__call__(tokens, positions, segment_ids, cache=cache, index=index, start=start, hidden=hidden,
                            memory=memory, memory_valid=valid)

  def fresh_params(self) -> tuple[str, ...]:
    """Top-level parameters a causal LM does not have: they start fresh under `config.init_from`."""
    return ('encoder',) + tuple(f'cross_{i}' for i in range(self.depth))

"""Image → report: a vision encoder whose states are the memory of the language models' decoder.

`ImageReporter` is `transformer.Transformer` with cross-attention (`cross=True`, Flamingo's gated layers before
each block) reading `VisionEncoder(image)`. The decoder's parameters have the causal LM's names, so a
pretraining run loads into it by name (`config.init_from`); the vision encoder and the cross-attention start
fresh (`fresh_params`). Decoding (models/decoding.py) gives the image to the prompt pass only: the encoder runs
once and its keys and values stay in the KV cache.

The encoder is a small CNN trunk (3×3 convolutions, GroupNorm, a stride-2 convolution per stage: locality, which
a plain patch embedding lacks on a few thousand images) whose final feature map, one token per cell with a
learned position embedding, goes through `vision_depth` bidirectional transformer blocks.
"""

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.models import layers
from aigc_jax.models import transformer


class VisionEncoder(nn.Module):
  """image [B, H, W, C] → states [B, (H / 2^stages) · (W / 2^stages), width]."""
  width: int
  depth: int
  heads: int
  mlp_ratio: int = 4
  channels: tuple[int, ...] = (32, 64, 128)
  dtype: str = 'float32'
  attention: str = 'auto'

  @nn.compact
  def __call__(self, image):
    dtype = jnp.dtype(self.dtype)
    h = image.astype(dtype)
    for c in self.channels:
      h = layers.conv(c, dtype=dtype)(h)
      h = nn.silu(nn.GroupNorm(min(8, c), dtype=dtype)(h))
      h = nn.silu(layers.conv(c, dtype=dtype, strides=(2, 2))(h))
    b, gh, gw, c = h.shape
    x = nn.Dense(self.width, dtype=dtype, name='to_tokens',
                 kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, 'embed')))(
                     h.reshape(b, gh * gw, c))
    x = x + self.param('pos_embed', nn.with_logical_partitioning(nn.initializers.normal(0.01), (None, 'embed')),
                       (gh * gw, self.width)).astype(dtype)
    mask = jnp.ones((b, 1, gh * gw, gh * gw), bool)
    out_std = 0.02 / (2 * max(self.depth, 1)) ** 0.5
    for i in range(self.depth):
      x, _ = transformer.Block(self.heads, self.width // self.heads, self.mlp_ratio * self.width, out_std, dtype,
                               self.attention, name=f'block_{i}')(x, mask)
    return nn.LayerNorm(dtype=dtype, name='ln_final')(x)


class ImageReporter(transformer.Transformer):
  """tokens [B, T] (and the image [B, H, W, C] on the first call) → logits [B, T, vocab]: the causal decoder
  of the language models, cross-attending to the vision encoder's states ('vision').

  Training: `model.apply(params, tokens, positions, segment_ids, image=…)`. Decoding: pass `image` to the
  prompt pass only."""
  vision_depth: int = 2
  vision_channels: tuple[int, ...] = (32, 64, 128)
  cross: bool = True
  context_keys = ('image',)   # what the task passes from a batch (tasks/language_model.py)

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, *, image=None, cache=None, index=None, start=None,
               hidden=False):
    memory = None
    if image is not None:
      if image.ndim != 4:
        raise ValueError(f'the image reporter reads images [B, H, W, C]; got shape {image.shape}.')
      memory = VisionEncoder(self.width, self.vision_depth, self.heads, self.mlp_ratio, tuple(self.vision_channels),
                             self.dtype, self.attention, name='vision')(image)
    return super().__call__(tokens, positions, segment_ids, cache=cache, index=index, start=start, hidden=hidden,
                            memory=memory)

  def fresh_params(self) -> tuple[str, ...]:
    """Top-level parameters a causal LM does not have: they start fresh under `config.init_from`."""
    return ('vision',) + tuple(f'cross_{i}' for i in range(self.depth))

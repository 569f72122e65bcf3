"""The noise-prediction U-Net of DDPM (Ho et al. 2020), in the layout MONAI's DiffusionModelUNet uses.

Residual blocks with GroupNorm and a time embedding, self-attention at the levels the config names, a
middle block of res-attention-res, and skip connections from every down block to the up path.
Parameters are float32; `dtype` is the compute dtype (bfloat16 on accelerators).
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models.layers import OUT_AXES
from aigc_jax.models.layers import QKV_AXES
from aigc_jax.models.layers import attend
from aigc_jax.models.layers import conv
from aigc_jax.models.layers import dense
from aigc_jax.models.norm import GroupNorm

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of (possibly fractional) timesteps, shape [B] -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class ResBlock(nn.Module):
  features: int
  norm_groups: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb, train: bool):
    h = nn.silu(GroupNorm(self.norm_groups, dtype=self.dtype)(x))
    h = conv(self.features, dtype=self.dtype)(h)
    if temb is not None:  # None: a plain residual block (the autoencoder's)
      h = h + dense(self.features, dtype=self.dtype)(nn.silu(temb))[:, None, None, :]
    h = nn.silu(GroupNorm(self.norm_groups, dtype=self.dtype)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Zero-initialised last conv: each block starts as the identity, which keeps deep U-Nets stable.
    h = conv(self.features, dtype=self.dtype, zero_init=True)(h)
    if x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), dtype=self.dtype)(x)
    return x + h


class AttentionBlock(nn.Module):
  head_channels: int
  norm_groups: int
  dtype: jnp.dtype = jnp.float32
  attention: str = 'auto'

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, hgt, wid, c = x.shape
    heads = max(c // self.head_channels, 1)
    h = GroupNorm(self.norm_groups, dtype=self.dtype)(x).reshape(b, hgt * wid, c)
    qkv_init = nn.with_logical_partitioning(_lecun, QKV_AXES)
    q, k, v = (nn.DenseGeneral((heads, c // heads), dtype=self.dtype, kernel_init=qkv_init, name=n)(h)
               for n in ('query', 'key', 'value'))
    # Sampling on a CPU: two images per pass keep their L×L scores in cache (forward ~20% faster here).
    per_pass = 2 if (self.attention == 'auto' and not train and jax.default_backend() == 'cpu') else 0
    out = attend(q, k, v, self.attention, images_per_pass=per_pass)
    out = nn.DenseGeneral(c, axis=(-2, -1), dtype=self.dtype, name='out',
                          kernel_init=nn.with_logical_partitioning(_zeros, OUT_AXES))(out)
    return x + out.reshape(b, hgt, wid, c)


class UNet(nn.Module):
  """eps-prediction U-Net: (x [B,H,W,C], t [B]) -> [B,H,W,out_channels].

  Attributes:
    channels: features per resolution level; the image is halved between levels.
    attention_levels: one bool per level, self-attention after each res block there.
    num_res_blocks: res blocks per level on the way down (one more on the way up, as in DDPM).
    head_channels: features per attention head.
    out_channels: None keeps the input's channel count.
    attention: how self-attention is computed: 'auto', 'einsum' or 'dot_product' (see `attend`).
    num_classes: > 0 adds a learned class embedding to the time embedding; class `num_classes` is the
      "no label" token that classifier-free guidance trains with and samples against.
  """
  channels: Sequence[int] = (64, 128, 128)
  attention_levels: Sequence[bool] = (False, True, True)
  num_res_blocks: int = 1
  head_channels: int = 64
  norm_groups: int = 32
  dropout: float = 0.0
  out_channels: int | None = None
  dtype: str = 'float32'
  remat: bool = False
  num_classes: int = 0
  attention: str = 'auto'

  @nn.compact
  def __call__(self, x, t, y=None, *, train: bool = False, features: bool = False):
    """`features`: return the middle block's output [B, H/2^(L−1), W/2^(L−1), channels[-1]] (the down path and
    the middle, no up path: its parameters are not created), for a classifier on a diffusion model's encoder."""
    if len(self.attention_levels) != len(self.channels):
      raise ValueError(f'model.attention_levels has {len(self.attention_levels)} entries but model.channels '
                       f'has {len(self.channels)}; give one bool per level.')
    dtype = jnp.dtype(self.dtype)
    res_cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
    # Explicit names keep the parameter tree the same with and without remat (checkpoints stay compatible).
    attn = lambda name: AttentionBlock(self.head_channels, self.norm_groups, dtype, self.attention, name=name)
    res = lambda f, name: res_cls(f, self.norm_groups, self.dropout, dtype=dtype, name=name)
    out_channels = self.out_channels or x.shape[-1]

    temb_dim = self.channels[0] * 4
    temb = timestep_embedding(t, self.channels[0])
    temb = dense(temb_dim, dtype=dtype)(temb)
    temb = dense(temb_dim, dtype=dtype)(nn.silu(temb))
    if self.num_classes:
      y = jnp.full((x.shape[0],), self.num_classes, jnp.int32) if y is None else y
      temb = temb + nn.Embed(self.num_classes + 1, temb_dim, dtype=dtype, name='class_embed')(y)

    h = conv(self.channels[0], dtype=dtype)(x.astype(dtype))
    skips = [h]
    for level, (feat, use_attn) in enumerate(zip(self.channels, self.attention_levels)):
      for i in range(self.num_res_blocks):
        h = res(feat, f'down{level}_res{i}')(h, temb, train)
        if use_attn:
          h = attn(f'down{level}_attn{i}')(h, train)
        skips.append(h)
      if level != len(self.channels) - 1:
        h = conv(feat, strides=(2, 2), dtype=dtype)(h)
        skips.append(h)

    h = res(self.channels[-1], 'mid_res0')(h, temb, train)
    h = attn('mid_attn')(h, train)
    h = res(self.channels[-1], 'mid_res1')(h, temb, train)
    if features:
      return h.astype(jnp.float32)

    for level in reversed(range(len(self.channels))):
      feat, use_attn = self.channels[level], self.attention_levels[level]
      for i in range(self.num_res_blocks + 1):
        h = res(feat, f'up{level}_res{i}')(jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
        if use_attn:
          h = attn(f'up{level}_attn{i}')(h, train)
      if level != 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, hh * 2, ww * 2, c), method='nearest')
        h = conv(feat, dtype=dtype)(h)

    h = nn.silu(GroupNorm(self.norm_groups, dtype=dtype)(h))
    h = conv(out_channels, dtype=dtype, zero_init=True)(h)
    return h.astype(jnp.float32)


class EncoderClassifier(nn.Module):
  """A diffusion U-Net's down path and middle block, told timestep 0 (a clean image), mean-pooled, and a linear
  head: images → class logits. Its 'unet' parameters are named as UNet's, so a configs/ct.py run's load into it
  (config.init_from=<that run>, config.init_parts={'unet': ''}: the whole tree, of which only the encoder's
  part is read; aigc_jax/core/warm_start.py). The pooled features are the residual stream after the middle
  block, before any output norm (pooling after a GroupNorm leaves the head nothing: see autoencoder.py)."""
  channels: Sequence[int] = (64, 128, 128)
  attention_levels: Sequence[bool] = (False, True, True)
  num_res_blocks: int = 1
  head_channels: int = 64
  norm_groups: int = 32
  num_classes: int = 3
  dtype: str = 'float32'
  attention: str = 'auto'

  @nn.compact
  def __call__(self, x):
    h = UNet(self.channels, self.attention_levels, self.num_res_blocks, self.head_channels, self.norm_groups,
             dtype=self.dtype, attention=self.attention, name='unet'
             )(x, jnp.zeros((x.shape[0],), jnp.int32), features=True)
    return dense(self.num_classes, dtype=jnp.float32, name='cls_head')(jnp.mean(h, (1, 2)))

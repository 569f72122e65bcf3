"""The KL-regularized convolutional autoencoder of latent diffusion (Rombach et al. 2022), small enough for CT
slices on a CPU: residual blocks (the U-Net's, without a time embedding), stride-2 convolutions down,
nearest-neighbour upsampling + convolution up.

`encode(x)` gives the mean and log-variance of a diagonal Gaussian over latents of shape
[B, H / 2^(levels−1), W / 2^(levels−1), latent_channels]; `decode(z)` maps latents back to images (linear
output: the caller clips to the window). Parameters: {'encoder': …, 'decoder': …}.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models.norm import GroupNorm
from aigc_jax.models.unet import ResBlock
from aigc_jax.models import layers
from aigc_jax.models.layers import conv


class Encoder(nn.Module):
  channels: Sequence[int]
  num_res_blocks: int
  latent_channels: int
  norm_groups: int
  dtype: str

  @nn.compact
  def __call__(self, x, features: bool = False):
    """(latent mean, log-variance); with `features`, the last level's activations [N, h, w, channels[-1]]
    before the output norm and the latent projection (what a classifier on this encoder reads; neither is
    created)."""
    dtype = jnp.dtype(self.dtype)
    h = conv(self.channels[0], dtype=dtype)(x.astype(dtype))
    for level, feat in enumerate(self.channels):
      for _ in range(self.num_res_blocks):
        h = ResBlock(feat, self.norm_groups, dtype=dtype)(h, None, False)
      if level != len(self.channels) - 1:
        h = conv(feat, strides=(2, 2), dtype=dtype)(h)
    if features:
      # Before the output norm: a GroupNorm takes out each group's mean over the slice, which is what a
      # mean-pooled classifier reads (on its output, this encoder's classifier stayed at chance).
      return h
    h = nn.silu(GroupNorm(self.norm_groups, dtype=dtype)(h))
    mean, logvar = jnp.split(conv(2 * self.latent_channels, dtype=dtype)(h).astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)  # as in LDM: keeps exp(logvar) finite early in training


class Decoder(nn.Module):
  channels: Sequence[int]
  num_res_blocks: int
  out_channels: int
  norm_groups: int
  dtype: str

  @nn.compact
  def __call__(self, z):
    dtype = jnp.dtype(self.dtype)
    h = conv(self.channels[-1], dtype=dtype)(z.astype(dtype))
    for level in reversed(range(len(self.channels))):
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.channels[level], self.norm_groups, dtype=dtype)(h, None, False)
      if level != 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method='nearest')
        h = conv(self.channels[level - 1], dtype=dtype)(h)
    h = nn.silu(GroupNorm(self.norm_groups, dtype=dtype)(h))
    return conv(self.out_channels, dtype=dtype)(h).astype(jnp.float32)


class KLAutoencoder(nn.Module):
  channels: Sequence[int] = (32, 64, 128)
  num_res_blocks: int = 1
  latent_channels: int = 4
  out_channels: int = 1
  norm_groups: int = 8
  dtype: str = 'float32'

  def setup(self):
    self.encoder = Encoder(self.channels, self.num_res_blocks, self.latent_channels, self.norm_groups, self.dtype)
    self.decoder = Decoder(self.channels, self.num_res_blocks, self.out_channels, self.norm_groups, self.dtype)

  def __call__(self, x):
    return self.decoder(self.encoder(x)[0])

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)

  @property
  def downsampling(self) -> int:
    return 2 ** (len(self.channels) - 1)


class EncoderClassifier(nn.Module):
  """The autoencoder's encoder (up to its output norm), mean-pooled, and a linear head: images → class
  logits. Its 'encoder' parameters are named as KLAutoencoder's, so a configs/ct_vae.py run's load into it
  (config.init_from=<that run>, config.init_parts={'encoder': 'vae/encoder'}; aigc_jax/core/warm_start.py)."""
  channels: Sequence[int] = (32, 64, 128)
  num_res_blocks: int = 1
  latent_channels: int = 4
  norm_groups: int = 8
  num_classes: int = 3
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    h = Encoder(self.channels, self.num_res_blocks, self.latent_channels, self.norm_groups, self.dtype,
                name='encoder')(x, features=True)
    return layers.dense(self.num_classes, dtype=jnp.float32, name='cls_head')(jnp.mean(h.astype(jnp.float32), (1, 2)))

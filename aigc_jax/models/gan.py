"""A DCGAN-style generator and discriminator pair for CT slices, as one Flax module with two sub-networks.

`GAN.init` creates both; the parameters are `{'gen': …, 'disc': …}`, so `config.optim.groups` can give each
its own optimizer and the task can differentiate each loss with respect to its own network. The generator
upsamples a latent vector (nearest neighbour + 3×3 convolution, which avoids the checkerboard of transposed
convolutions) to a tanh image in [-1, 1]; the discriminator is strided convolutions with leaky ReLU and no
normalization (the R1 penalty regularizes it, and batch statistics would couple real and fake examples).
`Discriminator(patch=True)` stops before the last dense layer and scores each receptive field: the
patch discriminator of the VAE's optional adversarial loss.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models.norm import GroupNorm
from aigc_jax.models.layers import conv
from aigc_jax.models.layers import dense


class Generator(nn.Module):
  channels: Sequence[int] = (128, 64, 32)   # features at each resolution, coarse to fine
  image_size: int = 32
  out_channels: int = 1
  norm_groups: int = 8
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, z):
    dtype = jnp.dtype(self.dtype)
    base = self.image_size // 2 ** (len(self.channels) - 1)
    if base * 2 ** (len(self.channels) - 1) != self.image_size or base < 2:
      raise ValueError(f'config.data.image_size={self.image_size} must be a multiple of '
                       f'2**(len(config.model.channels) - 1) = {2 ** (len(self.channels) - 1)}, at least twice.')
    h = dense(base * base * self.channels[0], dtype=dtype)(z.astype(dtype))
    h = h.reshape(z.shape[0], base, base, self.channels[0])
    for i, feat in enumerate(self.channels):
      if i:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method='nearest')
      h = conv(feat, dtype=dtype)(h)
      h = nn.leaky_relu(GroupNorm(min(self.norm_groups, feat), dtype=dtype)(h), 0.2)
      h = conv(feat, dtype=dtype)(h)
      h = nn.leaky_relu(GroupNorm(min(self.norm_groups, feat), dtype=dtype)(h), 0.2)
    return jnp.tanh(conv(self.out_channels, dtype=dtype)(h).astype(jnp.float32))


class Discriminator(nn.Module):
  channels: Sequence[int] = (32, 64, 128)   # features after each stride-2 convolution, fine to coarse
  patch: bool = False
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    dtype = jnp.dtype(self.dtype)
    h = x.astype(dtype)
    for feat in self.channels:
      h = nn.leaky_relu(conv(feat, dtype=dtype)(h), 0.2)
      h = nn.leaky_relu(conv(feat, (4, 4), strides=(2, 2), dtype=dtype)(h), 0.2)
    if self.patch:
      return conv(1, dtype=dtype)(h).astype(jnp.float32)[..., 0]   # [B, h, w] logits, one per patch
    return dense(1, dtype=dtype)(h.reshape(h.shape[0], -1)).astype(jnp.float32)[:, 0]


class GAN(nn.Module):
  """`__call__(z)` = D(G(z)), used once to create both; `generate` and `discriminate` are the two halves."""
  latent_dim: int = 128
  gen_channels: Sequence[int] = (128, 64, 32)
  disc_channels: Sequence[int] = (32, 64, 128)
  image_size: int = 32
  norm_groups: int = 8
  dtype: str = 'float32'

  def setup(self):
    self.gen = Generator(self.gen_channels, self.image_size, norm_groups=self.norm_groups, dtype=self.dtype)
    self.disc = Discriminator(self.disc_channels, dtype=self.dtype)

  def __call__(self, z):
    return self.disc(self.gen(z))

  def generate(self, z):
    return self.gen(z)

  def discriminate(self, x):
    return self.disc(x)

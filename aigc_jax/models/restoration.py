"""Image-to-image networks for restoration (low-dose CT denoising): x_low [B,H,W,C] → x̂ [B,H,W,C].

`ConvAutoencoder` is the classic medical encoder-decoder "Generator": strided convolutions down, transposed
convolutions up, a sigmoid (data in [0, 1] mapped to [-1, 1]) or linear output. `REDCNN` is the residual
encoder-decoder of Chen et al. (2017): stride-1 convolutions and deconvolutions with shortcuts, and the input
added to the output, so it learns the noise to remove. Kernels carry the same logical axis names as the
U-Net, so the mesh rules shard them alike.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.models.layers import CONV_AXES
from aigc_jax.models.layers import conv

_lecun = nn.initializers.lecun_normal()


def deconv(features: int, kernel=(3, 3), *, dtype, **kw) -> nn.ConvTranspose:
  return nn.ConvTranspose(features, kernel, dtype=dtype, padding='SAME',
                          kernel_init=nn.with_logical_partitioning(_lecun, CONV_AXES), **kw)


class ConvAutoencoder(nn.Module):
  channels: Sequence[int] = (32, 64, 128)
  output: str = 'sigmoid'        # sigmoid | linear
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    if self.output not in ('sigmoid', 'linear'):
      raise ValueError(f'config.model.output={self.output!r}; use "sigmoid" or "linear".')
    dtype = jnp.dtype(self.dtype)
    h = x.astype(dtype)
    for c in self.channels:
      h = nn.relu(conv(c, strides=(2, 2), dtype=dtype)(h))
    for c in list(self.channels[-2::-1]) + [self.channels[0]]:
      h = nn.relu(deconv(c, strides=(2, 2), dtype=dtype)(h))
    h = conv(x.shape[-1], dtype=dtype)(h).astype(jnp.float32)
    return nn.sigmoid(h) * 2.0 - 1.0 if self.output == 'sigmoid' else h


class REDCNN(nn.Module):
  features: int = 96
  kernel: int = 5
  depth: int = 5                 # conv layers down, the same number of deconvolutions up
  dtype: str = 'float32'
  out_channels: int = 0          # 0: as many as the input; fewer when extra input channels only condition it

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    dtype, k = jnp.dtype(self.dtype), (self.kernel, self.kernel)
    out = self.out_channels or x.shape[-1]
    h, skips = x.astype(dtype), []
    for i in range(self.depth):
      if i % 2 == 0:
        skips.append(h)          # the input and every second feature map come back on the way up
      h = nn.relu(conv(self.features, k, dtype=dtype)(h))
    for i in range(self.depth):
      last = i == self.depth - 1
      h = deconv(out if last else self.features, k, dtype=dtype)(h)
      if (self.depth - 1 - i) % 2 == 0:
        skip = skips.pop()
        h = h + (skip[..., :out] if last else skip)  # the image channels come back, not the conditioning
      if not last:
        h = nn.relu(h)
    return h.astype(jnp.float32)

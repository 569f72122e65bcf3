"""The CT feature network: a small CNN that reads a slice at 32×32 and tells its level, its lesion kind and its
HU histogram. Its pooled features are the offline FID/KID space (`aigc_jax/imaging/features.py`); trained as a
classification task (`configs/ct_features.py`).

The parameter tree (Conv_0…, GroupNorm_0…, Dense_0 level, Dense_1 kind, Dense_2 histogram) is what the shipped
`ct_features.msgpack` holds (kernels carry the shared layers' logical axes): renaming a layer or reordering the heads invalidates that file and its hash.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models import layers


class FeatureNet(nn.Module):
  """x [N, H, W] or [N, H, W, 1] in [-1, 1] → {'features': [N, 128], 'level': [N], 'logits': [N, num_classes],
  'histogram': [N, bins] logits}; inputs are resized to `size` × `size` first."""
  channels: tuple[int, ...] = (32, 64, 128)
  size: int = 32
  num_classes: int = 3   # lesion kind: none, lung nodule, liver mass
  bins: int = 16         # HU-histogram bins over the window

  @nn.compact
  def __call__(self, x):
    if x.ndim == 4:
      x = x[..., 0]
    h = jax.image.resize(x[..., None].astype(jnp.float32), (x.shape[0], self.size, self.size, 1), 'bilinear')
    for c in self.channels:
      h = layers.conv(c, dtype=jnp.float32)(h)
      h = nn.silu(nn.GroupNorm(8)(h))
      h = layers.conv(c, dtype=jnp.float32, strides=(2, 2))(h)
      h = nn.silu(h)
    feats = jnp.mean(h, axis=(1, 2))
    head = lambda n: layers.dense(n, dtype=jnp.float32)(feats)
    return {'features': feats, 'level': head(1)[:, 0], 'logits': head(self.num_classes),
            'histogram': head(self.bins)}

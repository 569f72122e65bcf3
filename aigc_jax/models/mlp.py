"""A multilayer perceptron for tabular inputs (risk prediction): features [B, F] → logits [B, num_labels].

Dense → GELU → dropout per hidden layer, kernels with logical axis names (layers.dense) so the mesh rules
apply as to every other model; the output layer is named 'cls_head' like the text classifier's.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.models import layers


class TabularMLP(nn.Module):
  hidden: Sequence[int] = (64, 64)
  num_labels: int = 1
  dropout: float = 0.1
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = x.astype(self.dtype)
    for i, width in enumerate(self.hidden):
      h = nn.gelu(layers.dense(width, dtype=self.dtype, name=f'dense_{i}')(h))
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(self.num_labels, name='cls_head')(h).astype(jnp.float32)

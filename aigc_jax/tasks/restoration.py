"""Image restoration trained with MSE: batches {'low_dose': input, 'image': target}, both windowed to [-1, 1].

The low-dose input comes from the CT acquisition model (`config.data.pairs=True`) or from a prepared dataset
with a `low_dose` key. The evaluation grid shows held-out triplets side by side: low-dose input | restored |
full-dose target, on phantom slices of seed `config.data.seed + 1` (never in training).
"""

import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax import models
from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from aigc_jax.tasks import task


def held_out_pairs(data: ml_collections.ConfigDict, num: int) -> tuple[np.ndarray, np.ndarray]:
  """(low, full) [num, H, W] in HU: phantom pairs of seed + 1 at the configured dose."""
  src = phantom.PhantomCT(seed=data.seed + 1, size=data.image_size, num_examples=num,
                          lesion_prob=data.lesion_prob, dose=(data.low_photons, data.full_photons, data.fov_mm))
  examples = [src[i] for i in range(num)]
  return np.stack([e['hu_low'] for e in examples]), np.stack([e['hu'] for e in examples])


class RestorationTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    if not config.data.pairs and not config.data.name.startswith('tfds:'):
      raise ValueError('config.task.name="restoration" needs input/target pairs: set config.data.pairs=True '
                       '(or a prepared dataset with a low_dose key).')
    self.model = models.build(config.model)
    d = config.data
    low, full = held_out_pairs(d, config.task.num_samples)
    win = lambda x: pipeline.window(x, d.window_lo, d.window_hi)[..., None]
    self.eval_low, self.eval_full = jnp.asarray(win(low)), jnp.asarray(win(full))

  def init(self, rng, batch):
    return self.model.init({'params': rng}, jnp.zeros((1,) + tuple(batch['low_dose'].shape[1:]), jnp.float32))['params']

  def restore(self, params, low):
    return self.model.apply({'params': params}, low)

  def loss(self, params, batch, rng):
    del rng
    err = self.restore(params, batch['low_dose']) - batch['image']
    return jnp.mean(jnp.square(err)), {'input_mse': jnp.mean(jnp.square(batch['low_dose'] - batch['image']))}

  def evaluate(self, params, rng, batch):
    del rng, batch
    out = jnp.clip(self.restore(params, self.eval_low), -1.0, 1.0)
    return {'low_restored_full': jnp.concatenate([self.eval_low, out, self.eval_full], axis=2)}

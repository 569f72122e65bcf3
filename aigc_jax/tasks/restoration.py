"""Image restoration trained with MSE: batches {'low_dose': input, 'image': target}, both windowed to [-1, 1].

The low-dose input comes from the CT acquisition model (`config.data.pairs=True`) or from a prepared dataset
with a `low_dose` key. The `ct_restoration` evaluator shows and scores held-out triplets (low-dose input |
restored | full-dose target).
"""

import jax.numpy as jnp
import ml_collections

from aigc_jax import models
from aigc_jax.tasks import task


class RestorationTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    if not config.data.pairs and not config.data.name.startswith('tfds:'):
      raise ValueError('config.task.name="restoration" needs input/target pairs: set config.data.pairs=True '
                       '(or a prepared dataset with a low_dose key).')
    self.model = models.build(config.model)

  def init(self, rng, batch):
    return self.model.init({'params': rng}, jnp.zeros((1,) + tuple(batch['low_dose'].shape[1:]), jnp.float32))['params']

  def predict(self, params, batch):
    """The restored image of batch['low_dose'] (unclipped)."""
    return self.model.apply({'params': params}, batch['low_dose'])

  def per_example_loss(self, params, batch, rng):
    del rng
    mse = lambda a, b: jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return mse(self.predict(params, batch), batch['image']), {'input_mse': mse(batch['low_dose'], batch['image'])}

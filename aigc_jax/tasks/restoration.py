"""Image restoration trained with MSE: batches {'low_dose': input, 'image': target}, both windowed to [-1, 1].

The low-dose input comes from the CT acquisition model (`config.data.pairs=True`) or from a prepared dataset
with a `low_dose` key. The evaluation grid shows held-out triplets side by side: low-dose input | restored |
full-dose target, on the run's held-out pairs (`pipeline.monitor_pairs`: phantom seed `config.data.seed + 1`,
or a prepared dataset's held-out split), read when the grid is first drawn.
"""

import functools

import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax import metrics
from aigc_jax import models
from aigc_jax import quality
from aigc_jax.data import pipeline
from aigc_jax.tasks import task


class RestorationTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    if not config.data.pairs and not config.data.name.startswith('tfds:'):
      raise ValueError('config.task.name="restoration" needs input/target pairs: set config.data.pairs=True '
                       '(or a prepared dataset with a low_dose key).')
    self.model = models.build(config.model)
    self.data, self.num_samples = config.data, config.task.num_samples

  @functools.cached_property
  def _eval_pairs(self):
    """(low, full) held-out grid slices, windowed; read when first drawn, so that `denoise` and `evaluate`
    rebuild the task without the training data at hand."""
    d = self.data
    low, full, source = pipeline.monitor_pairs(d, self.num_samples)
    if source != 'held out':
      metrics.log(f'the restoration grid and psnr_db use the {source}')
    win = lambda x: pipeline.window(x, d.window_lo, d.window_hi)[..., None]
    return jnp.asarray(win(low)), jnp.asarray(win(full))

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
    low, full = self._eval_pairs
    out = jnp.clip(self.restore(params, low), -1.0, 1.0)
    return {'low_restored_full': jnp.concatenate([low, out, full], axis=2)}

  def sample_metrics(self, outputs):
    """PSNR (dB, in the window) of the restored and of the low-dose held-out slices against full dose."""
    low, restored, full = np.split(np.asarray(outputs['low_restored_full'])[..., 0], 3, axis=2)
    psnr = lambda x: float(np.mean([quality.psnr(a, b, 2.0) for a, b in zip(x, full)]))
    return {'psnr_db': psnr(restored), 'psnr_input_db': psnr(low)}

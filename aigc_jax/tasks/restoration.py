"""Image restoration trained with MSE: batches {'low_dose': input, 'image': target}, both windowed to [-1, 1].

The low-dose input comes from the CT acquisition model (`config.data.pairs=True`) or from a prepared dataset
with a `low_dose` key. The `ct_restoration` evaluator shows and scores held-out triplets (low-dose input |
restored | full-dose target).

`config.task.noise_conditioning = True` (RED-CNN) gives the network a second input channel holding the noise
level it estimates on its own input (`noise_index`): the way BM3D is told σ, so one model can treat a large noisy
abdomen and a small quiet head differently, where a blind model applies one strength learnt on average.
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
    self.conditioned = bool(config.task.get('noise_conditioning', False))
    if self.conditioned and config.model.name != 'red_cnn':
      raise ValueError('config.task.noise_conditioning=True needs config.model.name="red_cnn" (its output keeps the '
                       f'image channel only); got {config.model.name!r}: add --config.task.noise_conditioning=False.')
    model = config.model
    if self.conditioned:  # two channels in (image, noise level), the image out
      model = ml_collections.ConfigDict({**config.model.to_dict(), 'out_channels': 1})
    self.model = models.build(model)
    lo, hi = config.data.window_lo, config.data.window_hi
    self.noise_scale = NOISE_SCALE / (hi - lo) * 2.0  # HU → window units
    self.body = (BODY_HU - lo) / (hi - lo) * 2.0 - 1.0  # the body's threshold in window units, whatever the window

  def _inputs(self, x):
    if not self.conditioned:
      return x
    level = noise_index(x, self.body) / self.noise_scale  # about 1 at quarter dose in an adult abdomen
    return jnp.concatenate([x, jnp.broadcast_to(level[:, None, None, None], x.shape)], axis=-1)

  def init(self, rng, batch):
    x = jnp.zeros((1,) + tuple(batch['low_dose'].shape[1:]), jnp.float32)
    return self.model.init({'params': rng}, self._inputs(x))['params']

  def predict(self, params, batch):
    """The restored image of batch['low_dose'] (unclipped)."""
    return self.model.apply({'params': params}, self._inputs(batch['low_dose']))

  def per_example_loss(self, params, batch, rng):
    del rng
    mse = lambda a, b: jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return mse(self.predict(params, batch), batch['image']), {'input_mse': mse(batch['low_dose'], batch['image'])}


NOISE_SCALE = 30.0  # HU: the conditioning channel is the noise index in units of quarter-dose noise in water
BODY_HU = -500.0    # the noise is measured where the image is above this: the body, not the air


def noise_index(x: jnp.ndarray, body: float = -0.5) -> jnp.ndarray:
  """[B] noise level of windowed images [B, H, W, 1]: the median |finest diagonal Haar detail| / 0.6745 over the
  2×2 blocks brighter than `body` (−0.5 ≈ −500 HU in the default window: the body, not the air), in window
  units: the estimate of `aigc_jax.imaging.denoisers.noise_sigma_hu`, in the graph."""
  h, w = (x.shape[1] // 2) * 2, (x.shape[2] // 2) * 2
  a = x[:, :h, :w, 0]
  detail = (a[:, 0::2, 0::2] - a[:, 1::2, 0::2] - a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) / 2.0
  inside = jnp.minimum(jnp.minimum(a[:, 0::2, 0::2], a[:, 1::2, 0::2]), jnp.minimum(a[:, 0::2, 1::2], a[:, 1::2, 1::2])) > body
  level = jnp.nanmedian(jnp.where(inside, jnp.abs(detail), jnp.nan), axis=(1, 2)) / 0.6745
  return jnp.nan_to_num(level, nan=0.0)  # no body in view (a patch of air): no noise to speak of

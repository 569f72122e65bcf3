"""Image classification trained with cross-entropy, with optional regression and HU-histogram heads.

  config.task.name = 'classification'
  config.task.label = 'lesion_kind'      # the batch key of the integer class (listed in config.data.labels)
  config.task.num_classes = 3
  config.task.regression = {'level': 10.0}   # model head = batch key → weight of its squared error; {} for none
  config.task.histogram_weight = 1.0     # weight of the input's HU-histogram cross-entropy (0: no such head)
  config.task.input_noise = 0.05         # largest std (window units) of the Gaussian noise added per example

The model maps a batch's 'image' to class logits, or to a dict with 'logits' and one output per extra head
(`models.feature_net.FeatureNet`). The noise has a random strength per example, so that what the model learns
does not hinge on noise-free pixels. `predict` gives the logits; the `classification` evaluator scores them on
held-out data. The CT feature network of FID/KID (`configs/ct_features.py`) is this task.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax import models
from aigc_jax.tasks import task


def training_noise(rng: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """(strength [N, 1, …] uniform in [0, 1), unit noise of `shape`) for a batch of `shape`. Separate keys: from
  one key, jax draws the first pixel's noise from the same bits as the first strength, tying the two."""
  k_strength, k_noise = jax.random.split(rng)
  return (jax.random.uniform(k_strength, (shape[0],) + (1,) * (len(shape) - 1)),
          jax.random.normal(k_noise, shape))


def histogram(x: jax.Array, bins: int) -> jax.Array:
  """Share of pixels in each of `bins` equal bins of [-1, 1], per image: [N, …] → [N, bins]."""
  idx = jnp.clip(((x + 1.0) * 0.5 * bins).astype(jnp.int32), 0, bins - 1)
  return jnp.mean(jax.nn.one_hot(idx.reshape(x.shape[0], -1), bins), axis=1)


class ClassificationTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    self.label, self.num_classes = t.label, int(t.num_classes)
    self.regression = dict(t.get('regression') or {})
    self.histogram_weight, self.input_noise = float(t.get('histogram_weight', 0.0)), float(t.input_noise)
    missing = [k for k in (self.label, *self.regression) if k not in config.data.labels]
    if missing:
      raise ValueError(f'config.task asks for the label(s) {missing}, which batches lack: add them to '
                       f'config.data.labels (now {tuple(config.data.labels)}).')
    self.model = models.build(config.model)

  def init(self, rng, batch):
    return self.model.init({'params': rng}, jnp.zeros((1,) + tuple(batch['image'].shape[1:]), jnp.float32))['params']

  def _outputs(self, params, x) -> dict[str, jax.Array]:
    out = self.model.apply({'params': params}, x)
    out = out if isinstance(out, dict) else {'logits': out}
    if out['logits'].shape[-1] != self.num_classes:
      raise ValueError(f'the model gives {out["logits"].shape[-1]} logits, config.task.num_classes is '
                       f'{self.num_classes}: make them agree (e.g. config.model.num_classes).')
    return out

  def predict(self, params, batch):
    """Class logits [N, num_classes] of batch['image']."""
    return self._outputs(params, batch['image'])['logits']

  def per_example_loss(self, params, batch, rng):
    x = batch['image']
    if self.input_noise:
      strength, unit = training_noise(rng, x.shape)
      x = x + strength * self.input_noise * unit
    out = self._outputs(params, x)
    labels = batch[self.label]
    loss = optax.softmax_cross_entropy_with_integer_labels(out['logits'], labels)
    metrics = {'cross_entropy': loss, 'accuracy': (jnp.argmax(out['logits'], -1) == labels).astype(jnp.float32)}
    for key, weight in self.regression.items():
      err = jnp.square(out[key] - batch[key])
      loss, metrics[f'{key}_mse'] = loss + weight * err, err
    if self.histogram_weight:
      hist = optax.softmax_cross_entropy(out['histogram'], histogram(x, out['histogram'].shape[-1]))
      loss, metrics['histogram_ce'] = loss + self.histogram_weight * hist, hist
    return loss, metrics

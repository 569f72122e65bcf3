"""Risk prediction from patient features, trained with binary cross-entropy per outcome.

  config.task.name = 'risk'
  config.model.name = 'tabular_mlp'
  config.data.name = 'tabular'           # batches: 'features' [B, F], 'labels' [B, K], 'label_mask' [B, K]

The loss of a patient is the mean over the outcomes known for them (the mask: flchain's censored patients
have no 10-year outcome) of −[y log σ(z) + (1 − y) log(1 − σ(z))] (objectives/binary.py); the batch loss is the
mean over patients. `predict` gives the logits; the `risk` evaluator turns them into probabilities and scores
discrimination and calibration.
"""

import jax.numpy as jnp
import ml_collections

from aigc_jax import models
from aigc_jax.objectives import binary
from aigc_jax.tasks import task


class RiskTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    self.model = models.build(config.model)

  def init(self, rng, batch):
    k = batch['labels'].shape[-1]
    if k != self.model.num_labels:
      raise ValueError(f'the cohort has {k} outcomes, config.model.num_labels is {self.model.num_labels}: set '
                       f'--config.model.num_labels={k}.')
    return self.model.init({'params': rng}, jnp.zeros((1,) + tuple(batch['features'].shape[1:]), jnp.float32)
                           )['params']

  def predict(self, params, batch):
    """Outcome logits [B, K] (dropout off)."""
    return self.model.apply({'params': params}, batch['features'])

  def per_example_loss(self, params, batch, rng):
    logits = self.model.apply({'params': params}, batch['features'], train=True, rngs={'dropout': rng})
    loss, accuracy = binary.masked_loss_and_accuracy(logits, batch['labels'], batch.get('label_mask'))
    return loss, {'accuracy': accuracy}

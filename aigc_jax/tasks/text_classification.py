"""Multi-label text classification (automatic coding) trained with binary cross-entropy, optionally
fine-tuned from a pretrained language model.

  config.task.name = 'text_classification'
  config.model.name = 'text_classifier'   # the transformer + a head on its mean-pooled states
  config.init_from = 'runs/lm_gpt'        # pretraining run: its parameters load by name, the head is fresh

Batches from the 'text_labels' source: tokens, segment_ids, positions and 'labels' [B, K] (0/1; an optional
'label_mask' [B, K] marks the known ones). The loss of a document is the mean over its known labels of
−[y log σ(z) + (1 − y) log(1 − σ(z))] (objectives/binary.py); the batch loss is the mean over documents.
"""

import jax.numpy as jnp
import ml_collections

from aigc_jax import models
from aigc_jax.objectives import binary
from aigc_jax.tasks import task


class TextClassificationTask(task.Task):

  new_heads = ('cls_head',)   # fresh when fine-tuning from a language model (core/checkpoint.py)

  def __init__(self, config: ml_collections.ConfigDict):
    self.model = models.build(config.model)

  def init(self, rng, batch):
    k = batch['labels'].shape[-1]
    if k != self.model.num_labels:
      raise ValueError(f'the data has {k} labels, config.model.num_labels is {self.model.num_labels}: set '
                       f'--config.model.num_labels={k}.')
    return self.model.init({'params': rng}, jnp.zeros((1, batch['tokens'].shape[1]), jnp.int32))['params']

  def predict(self, params, batch):
    """Label logits [B, K]."""
    return self.model.apply({'params': params}, batch['tokens'], batch['positions'], batch['segment_ids'])

  def per_example_loss(self, params, batch, rng):
    del rng
    logits = self.predict(params, batch)
    loss, accuracy = binary.masked_loss_and_accuracy(logits, batch['labels'], batch.get('label_mask'))
    return loss, {'label_accuracy': accuracy}

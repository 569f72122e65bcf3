"""Multi-label text classification (automatic coding) trained with binary cross-entropy, optionally
fine-tuned from a pretrained language model.

  config.task.name = 'text_classification'
  config.task.loss = 'bce'                # or 'softmax' where each document has one label (below)
  config.model.name = 'text_classifier'   # the transformer + a head on its mean-pooled states
  config.init_from = 'runs/lm_gpt'        # pretraining run: its parameters load by name, the head is fresh

Batches from the 'text_labels' source: tokens, segment_ids, positions and 'labels' [B, K] (0/1; an optional
'label_mask' [B, K] marks the known ones). The loss of a document is the mean over its known labels of
−[y log σ(z) + (1 − y) log(1 − σ(z))] (objectives/binary.py); the batch loss is the mean over documents.

`loss='softmax'` is for tasks where a document has one label among many (ICD-10-CM phrase → category, 1,918
labels): K one-vs-rest sigmoids, each seeing one positive in ~K examples, stay at their priors for many
passes, while a softmax moves every logit of every example. The loss of a document is −Σ_k y_k log p_k / Σ_k y_k
with p = softmax(z) (a document with several labels spreads its target over them; one with none adds
nothing), and the evaluators score p instead of σ(z).
"""

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax import models
from aigc_jax.objectives import binary
from aigc_jax.tasks import task


class TextClassificationTask(task.Task):

  new_heads = ('cls_head',)   # fresh when fine-tuning from a language model (core/checkpoint.py)
  LOSSES = ('bce', 'softmax')

  def __init__(self, config: ml_collections.ConfigDict):
    self.model = models.build(config.model)
    self.loss_kind = config.task.get('loss', 'bce')
    if self.loss_kind not in self.LOSSES:
      raise ValueError(f'config.task.loss={self.loss_kind!r}; choose one of {self.LOSSES} (softmax: one label per '
                       'document).')

  def init(self, rng, batch):
    k = batch['labels'].shape[-1]
    if k != self.model.num_labels:
      raise ValueError(f'the data has {k} labels, config.model.num_labels is {self.model.num_labels}: set '
                       f'--config.model.num_labels={k}.')
    return self.model.init({'params': rng}, jnp.zeros((1, batch['tokens'].shape[1]), jnp.int32))['params']

  def predict(self, params, batch):
    """Label logits [B, K]."""
    return self.model.apply({'params': params}, batch['tokens'], batch['positions'], batch['segment_ids'])

  def probabilities(self, params, batch):
    """Label probabilities [B, K]: σ(z) under the BCE, softmax(z) under the softmax loss."""
    logits = self.predict(params, batch)
    return jax.nn.softmax(logits) if self.loss_kind == 'softmax' else jax.nn.sigmoid(logits)

  def per_example_loss(self, params, batch, rng):
    del rng
    logits = self.predict(params, batch)
    if self.loss_kind == 'softmax':
      return softmax_loss_and_top1(logits, batch['labels'], batch.get('label_mask'))
    loss, accuracy = binary.masked_loss_and_accuracy(logits, batch['labels'], batch.get('label_mask'))
    return loss, {'label_accuracy': accuracy}


def softmax_loss_and_top1(logits, labels, mask=None):
  """Per document: (−Σ_k y_k log softmax(z)_k / Σ_k y_k, {'top1_accuracy': 1 if the top logit is a label}).
  Unknown labels (mask 0) are neither targets nor candidates."""
  logits = logits.astype(jnp.float32)
  y = labels.astype(jnp.float32)
  if mask is not None:
    known = mask > 0
    logits, y = jnp.where(known, logits, -1e9), y * known
  total = jnp.sum(y, axis=-1)
  loss = -jnp.sum(y * jax.nn.log_softmax(logits), axis=-1) / jnp.maximum(total, 1.0)
  top = jnp.take_along_axis(y, jnp.argmax(logits, axis=-1)[:, None], axis=-1)[:, 0]
  return loss, {'top1_accuracy': (top > 0.5).astype(jnp.float32)}

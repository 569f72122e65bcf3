"""Language-model pretraining: next-token prediction (GPT-2 style) or masked-token prediction (BERT style).

  config.task.name = 'language_model'
  config.task.objective = 'causal'   # or 'masked'
  config.task.mask_rate = 0.15       # masked: share of real tokens chosen; of those 80% → [MASK], 10% → a
                                     # random token, 10% left as they are (BERT's recipe)

Batches are packed rows from the 'text' source (tokens, segment_ids, positions; aigc_jax/data/text.py). The
loss is the cross-entropy of the predicted tokens, averaged over every predicted token of the batch; a
row's per-example loss is its own tokens' mean. A batch may carry 'loss_mask' [B, L] (the 'text_pairs'
source: 1 where the next token is the target's): then only those predictions count, which trains a
conditional generator (findings → impression) with the same model and loss. Causal: every token but a document's first is predicted from
the tokens before it in its document. Masked: the chosen tokens are predicted from the whole document.

With config.model.name = 'encoder_decoder' (the seq2seq family) the batch also carries 'source' and
'source_segment' [B, S] (text_pairs with config.data.layout = 'encoder_decoder'): the decoder's tokens are
predicted as above while it cross-attends to the encoded source. Fine-tuned from a causal LM
(`config.init_from`), the encoder and the cross-attention start fresh (`new_heads`). With
config.model.name = 'image_reporter' (image → report) the batch carries 'image' instead (config.data.name =
'phantom_reports'), which a vision encoder reads (models/vision_text.py); the model names its inputs
(`context_keys`), so the task has no per-model code.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax import models
from aigc_jax.models import decoding
from aigc_jax.tasks import task
from aigc_jax.text import tokenizer as tokenizer_lib

OBJECTIVES = ('causal', 'masked')


def causal_targets(tokens: jax.Array, segment_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(targets [B, L], weights [B, L]): position t predicts token t+1 where both are in the same document."""
  targets = jnp.concatenate([tokens[:, 1:], jnp.zeros_like(tokens[:, :1])], axis=1)
  nxt = jnp.concatenate([segment_ids[:, 1:], jnp.zeros_like(segment_ids[:, :1])], axis=1)
  return targets, ((nxt == segment_ids) & (segment_ids != 0)).astype(jnp.float32)


def mask_tokens(rng: jax.Array, tokens: jax.Array, segment_ids: jax.Array, rate: float, vocab_size: int
                ) -> tuple[jax.Array, jax.Array]:
  """BERT's corruption: (inputs, weights) where weights mark the chosen tokens (`rate` of the real,
  non-special ones); chosen tokens become [MASK] (80%), a random non-special token (10%) or stay (10%)."""
  k_pick, k_how, k_rand = jax.random.split(rng, 3)
  real = (segment_ids != 0) & (tokens >= len(tokenizer_lib.SPECIALS))
  chosen = real & (jax.random.uniform(k_pick, tokens.shape) < rate)
  how = jax.random.uniform(k_how, tokens.shape)
  random_tok = jax.random.randint(k_rand, tokens.shape, len(tokenizer_lib.SPECIALS), vocab_size)
  inputs = jnp.where(chosen & (how < 0.8), tokenizer_lib.MASK, tokens)
  inputs = jnp.where(chosen & (how >= 0.8) & (how < 0.9), random_tok, inputs)
  return inputs, chosen.astype(jnp.float32)


class LanguageModelTask(task.Task):

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    if t.objective not in OBJECTIVES:
      raise ValueError(f'config.task.objective={t.objective!r}; choose one of {OBJECTIVES}.')
    self.objective, self.mask_rate = t.objective, float(t.get('mask_rate', 0.15))
    self.model = models.build(config.model)
    self.context_keys = tuple(getattr(self.model, 'context_keys', ()))   # the source text, or the image
    self.conditional = bool(self.context_keys)
    self.new_heads = self.model.fresh_params() if self.conditional else ()
    if self.model.causal != (self.objective == 'causal'):
      raise ValueError(f'config.task.objective={self.objective!r} needs config.model.causal='
                       f'{self.objective == "causal"}: a {"causal" if self.model.causal else "bidirectional"} '
                       'model cannot learn it.')

  def source(self, batch) -> dict:
    """The model's context inputs in `batch` (the encoder's source text, or the image; {} for a plain LM)."""
    if not self.conditional:
      return {}
    missing = [k for k in self.context_keys if k not in batch]
    if missing:
      if 'image' in self.context_keys:
        raise ValueError(f'config.model.name={type(self.model).__name__!r} reads an image with each report: use '
                         'config.data.name=\'phantom_reports\'.')
      raise ValueError('config.model.name=\'encoder_decoder\' reads a source: use config.data.name=\'text_pairs\' with '
                       'config.data.layout=\'encoder_decoder\'.')
    return {k: batch[k] for k in self.context_keys}

  def init(self, rng, batch):
    context = {k: jnp.ones((1,) + v.shape[1:], v.dtype) for k, v in self.source(batch).items()}
    return self.model.init({'params': rng}, jnp.zeros((1, batch['tokens'].shape[1]), jnp.int32),
                           **context)['params']

  def predict(self, params, batch):
    """Logits [B, L, vocab] of the batch's rows, as given (no masking)."""
    return self.model.apply({'params': params}, batch['tokens'], batch['positions'], batch['segment_ids'],
                            **self.source(batch))

  def token_losses(self, params, batch, rng) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(cross-entropy [B, L], weights [B, L] of the predicted tokens, correct [B, L]) for a batch."""
    tokens, seg = batch['tokens'], batch['segment_ids']
    if self.objective == 'causal':
      inputs, (targets, weights) = tokens, causal_targets(tokens, seg)
      if 'loss_mask' in batch:
        weights = weights * batch['loss_mask'].astype(weights.dtype)
    else:
      inputs, weights = mask_tokens(rng, tokens, seg, self.mask_rate, self.model.vocab_size)
      targets = tokens
    logits = self.model.apply({'params': params}, inputs, batch['positions'], seg, **self.source(batch))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return ce, weights, (jnp.argmax(logits, -1) == targets).astype(jnp.float32)

  def per_example_loss(self, params, batch, rng):
    ce, w, correct = self.token_losses(params, batch, rng)
    n = jnp.maximum(w.sum(-1), 1.0)
    return (ce * w).sum(-1) / n, {'token_accuracy': (correct * w).sum(-1) / n}

  def loss(self, params, batch, rng):
    ce, w, correct = self.token_losses(params, batch, rng)
    n = jnp.maximum(w.sum(), 1.0)  # the mean over tokens, not over rows of unequal token counts
    return (ce * w).sum() / n, {'token_accuracy': (correct * w).sum() / n, 'predicted_tokens': w.sum()}

  def generate(self, params, prompt, rng, *, num_new: int, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, beam: int = 0, length_penalty: float = 0.0, start=None, **context):
    """[B, num_new] tokens continuing `prompt` [B, P] (causal models): sampled (`models.decoding.generate`), or
    with `beam` > 0 the beam search's best (`decoding.beam_search`; rng, temperature, top-k/p unused).
    `start` [B]: each row's first real token, for prompts left-padded to one length. A conditional model needs
    its context: an encoder-decoder `source` (and `source_segment`) [B, S], the image reporter `image`
    [B, H, W, C]; the prompt is then the decoder's cue."""
    if self.objective != 'causal':
      raise ValueError('Only a causal language model generates text; this one is masked.')
    unknown = set(context) - set(self.context_keys)
    if unknown:
      raise ValueError(f'generate() got {sorted(unknown)}; this model reads {list(self.context_keys) or "no context"}.')
    context = self.source(context) if self.conditional else None
    if beam > 0:
      return decoding.beam_search(self.model, params, prompt, num_new=num_new, beam=beam,
                                  length_penalty=length_penalty, stop_id=tokenizer_lib.EOS,
                                  pad_id=tokenizer_lib.PAD, start=start, context=context)[0]
    return decoding.generate(self.model, params, prompt, rng, num_new=num_new, temperature=temperature,
                             top_k=top_k, top_p=top_p, stop_id=tokenizer_lib.EOS, pad_id=tokenizer_lib.PAD,
                             start=start, context=context)

r"""A BERT-style bidirectional encoder pretrained with masked-token prediction on the same real medical text
as configs/lm_gpt.py, with a WordPiece tokenizer (lower-cased) trained on the training split at the first
start and kept in the workdir. Same blocks as the causal model; only the attention mask and the objective
differ.

  python -m aigc_jax.main --config=configs/lm_bert.py:runlocal --workdir=runs/lm_bert   # CPU, minutes
  python -m aigc_jax.evaluate --workdir=runs/lm_bert                                    # held-out MLM accuracy

`val` draws BERT's masks (15% of tokens: 80% [MASK], 10% random, 10% kept) over every held-out row with a
fixed key and reports the accuracy and perplexity on the masked tokens.
"""

import ml_collections

from configs import lm_gpt


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = lm_gpt.get_config('test' if arg == 'test' else None)
  c.data.tokenizer_kind = 'wordpiece'
  c.model.causal = False
  c.task.objective = 'masked'
  del c.evals['samples']         # an encoder does not generate
  c.optim.learning_rate = 5e-4
  c.optim.b2 = 0.98
  if arg == 'runlocal':
    runlocal = lm_gpt.get_config('runlocal')
    for key in ('seq_len', 'vocab_size'):
      c.data[key] = runlocal.data[key]
    for key in ('width', 'depth', 'heads'):
      c.model[key] = runlocal.model[key]
    for key in ('batch_size', 'num_steps', 'log_every', 'checkpoint_every'):
      c[key] = runlocal[key]
    c.optim.learning_rate, c.optim.warmup_steps = 1e-3, runlocal.optim.warmup_steps
    c.evals.val.every = runlocal.evals.val.every   # and every held-out row, as lm_gpt runlocal
  elif arg not in (None, '', 'test'):
    raise ValueError(f'configs/lm_bert.py: unknown variant {arg!r}; use one of: runlocal, test (or none).')
  return c

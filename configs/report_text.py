r"""Report generation from the doctor's findings: the IU chest X-ray reports' FINDINGS → IMPRESSION, a causal
language model trained on the impression tokens only, fine-tuned from a pretraining run of configs/lm_gpt.py
(which read the IU reports of the training split, in the same "FINDINGS: … IMPRESSION: …" layout).

  python -m aigc_jax.main --config=configs/lm_gpt.py:runlocal --workdir=runs/lm_gpt
  python -m aigc_jax.main --config=configs/report_text.py:runlocal --workdir=runs/report_ft \
      --config.init_from=runs/lm_gpt        # fine-tune: its parameters and tokenizer
  python -m aigc_jax.main --config=configs/report_text.py:runlocal --workdir=runs/report_scratch \
      --config.data.tokenizer=runs/lm_gpt   # the same model and tokenizer from random weights
  python -m aigc_jax.baseline --config=configs/report_text.py:runlocal   # most frequent / nearest / copied

`val` generates the first 64 validation impressions greedily while training; `test` writes every test
impression by beam search at the end and scores it (BLEU-1…4, ROUGE-L, CIDEr-D, clinical P/R/F1;
aigc_jax/evals/report.py). The splits are the pretraining text's, so no held-out report was pretrained on.
"""

import ml_collections

from configs import common
from configs import lm_gpt

VARIANTS = ('runlocal', 'test')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/report_text.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} '
                     '(or none).')
  lm = lm_gpt.get_config('test' if arg == 'test' else 'runlocal' if arg else None)
  c = common.base_config()
  c.data = common.task_text_data(lm.data, 'text_pairs')
  c.data.pairs = 'iu_findings_impression'
  c.data.prompt_len = 96         # findings tokens (99% of the findings fit a BPE of 4,096; longer ones keep
  c.data.target_len = 32         # their start); impression tokens with [EOS] (95% fit)
  c.data.seq_len = 128           # prompt_len + target_len: the pretraining run's position table
  c.data.tokenizer = ''          # empty: the init_from run's when fine-tuning (registry.build_data), else trained
  common.pair_generator(c, lm, 'report', val_every=100, val_num=64)
  c.optim.learning_rate = 3e-4
  c.optim.warmup_steps = 20
  c.batch_size = 32
  c.num_steps = 200              # 2.3 passes over the 2,769 training pairs
  c.log_every = 50
  c.checkpoint_every = c.num_steps
  if arg == 'test':
    common.tiny_trainer(c)
    c.data.prompt_len, c.data.target_len, c.data.seq_len = 24, 8, 32
    c.model.max_len = c.data.seq_len
    c.evals.val.every = 0
    c.evals.test.num = 6
    c.evals.test.beam = 2
  c.evals.test.every = c.num_steps   # once, at the end
  return c

r"""Image → report: a CT slice in, its report out (docs/reports.md), on the built-in phantom slices whose
findings are known, paired with reports in the IU radiologists' words (aigc_jax/text/slice_reports.py).

  python -m aigc_jax.main --config=configs/report_image.py:runlocal --workdir=runs/report_image   # CPU, minutes
  python -m aigc_jax.main --config=configs/lm_gpt.py:runlocal_small --workdir=runs/lm_small      # then the same
  python -m aigc_jax.main --config=configs/report_image.py:runlocal_lm --workdir=runs/report_image_lm \
      --config.init_from=runs/lm_small                # decoder started from that pretrained language model
  python -m aigc_jax.baseline --config=configs/report_image.py:runlocal     # most frequent / nearest image
  python -m aigc_jax.report --workdir=runs/report_image --input=SCANS > reports.jsonl

The model (models/vision_text.py's ImageReporter) is the language models' causal decoder cross-attending to a
CNN + transformer vision encoder, trained with teacher forcing on the report tokens. The full recipe's decoder
has lm_gpt:runlocal's size, so it can start from that pretrained language model: --config.init_from=runs/lm_gpt
--config.data.vocab_size=4096 (its tokenizer and decoder load by name; the vision encoder and the
cross-attention start fresh). `runlocal` trains a decoder of half the width from scratch, on CPU in minutes.

`val` decodes 64 validation slices greedily now and then; `test` writes the report of every test slice greedily
at the end (beam search prefers the normal report: docs/reports.md) and scores BLEU-1…4 / ROUGE-L / CIDEr-D against the references and the level, lesions, side
and size the reports state against the slices' labels (aigc_jax/evals/generation.py, 'image_report').
"""

import ml_collections

from configs import common
from configs import lm_gpt

VARIANTS = ('runlocal', 'runlocal_lm', 'test')
DATA_SEED = 10_000   # apart from every other recipe's phantom seeds; validation +1, test +2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/report_image.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} '
                     '(or none: the full recipe).')
  lm = lm_gpt.get_config('runlocal' if arg != 'test' else 'test')
  c = common.base_config()
  d = c.data = ml_collections.ConfigDict()
  d.name = 'phantom_reports'
  d.seed = DATA_SEED             # fixed: training seeds (config.seed) change the model, not the slices
  d.num_train, d.num_validation, d.num_test = 16_384, 512, 1_024
  d.image_size = 64              # 6.25 mm pixels over 400 mm: nodules of 10–28 mm are 2–4 pixels across
  d.lesion_prob = 0.5
  d.windows = ((-1000.0, 1000.0), (-160.0, 240.0))   # whole range; soft tissue (liver masses: −25…−45 HU)
  d.target_len = 64              # report tokens with [EOS] (the longest report: 50 tokens of the BPE below)
  d.seq_len = 68                 # the cue "FINDINGS:" then the report
  d.vocab_size = 1024
  d.tokenizer = ''               # empty: the init_from run's when fine-tuning (registry.build_data), else trained
  d.tokenizer_kind = 'bpe'
  d.split = 'train'
  d.shuffle = True
  d.num_threads = 1
  d.num_workers = 0
  d.prefetch = 4
  c.model = ml_collections.ConfigDict(lm.model.to_dict())
  c.model.name = 'image_reporter'
  c.model.vocab_size = d.get_ref('vocab_size')
  c.model.vision_depth = 2
  c.model.vision_channels = (32, 64, 128)   # 64² → an 8 × 8 grid of 64 tokens
  # The cross-attention starts open, from scratch and from a pretrained LM alike: at 0 the fresh vision encoder
  # gets no gradient (docs/reports.md); runlocal_lm's measured runs start open.
  c.model.gate_init = 1.0
  c.task = ml_collections.ConfigDict({'name': 'language_model', 'objective': 'causal', 'mask_rate': 0.15})
  c.evals.val = common.evaluator('image_report', every=1_000, split='validation', num=64, beam=0, batch=64)
  # Greedy: beam search writes the likeliest report, which is the normal one (docs/reports.md measures both).
  c.evals.test = common.evaluator('image_report', every=0, split='test', beam=0, batch=64)
  c.optim.name = 'adam'
  c.optim.learning_rate = 5e-4
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.ema_decay = 0.0
  c.batch_size = 64
  c.num_steps = 10_000
  c.log_every = 100
  c.checkpoint_every = 2_000
  if arg in ('runlocal', 'runlocal_lm'):
    d.num_train, d.num_validation, d.num_test = 4_096, 256, 512
    c.model.width, c.model.depth, c.model.heads = 128, 3, 4   # half lm_gpt:runlocal's width: CPU minutes
    c.batch_size = 32
    c.num_steps = 1_500          # 11.7 passes over the 4,096 training slices
    c.log_every = 100
    c.checkpoint_every = 500
    c.evals.val.every = 500
    if arg == 'runlocal_lm':
      # With --config.init_from=<a lm_gpt.py:runlocal_small run>: its decoder and tokenizer (BPE of 1,024 on
      # ICD-10-CM and IU text), in which the reports take up to 85 tokens with [EOS] (the own one's: 53).
      d.target_len, d.seq_len = 88, 92
  elif arg == 'test':
    common.tiny_trainer(c)
    d.image_size = 32
    d.num_train, d.num_validation, d.num_test = 48, 8, 8
    d.vocab_size = 384
    d.target_len, d.seq_len = 28, 32   # reports cut short: the plumbing, not the wording
    c.model.max_len = d.seq_len
    c.model.vision_depth = 1
    c.model.vision_channels = (8, 16)
    c.evals.val.every = 0
    c.evals.test.beam = 2          # the beam path too
  c.evals.test.every = c.num_steps   # once, at the end
  return c

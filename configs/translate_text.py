r"""Medical translation: ICD-10 titles from English into Spanish, German and French, one model for all three,
trained from scratch on GNU Health's ICD-10 catalogues (aigc_jax/text/translation.py), split by ICD-10 block.

  python -m aigc_jax.main --config=configs/translate_text.py:runlocal --workdir=runs/translate
  python -m aigc_jax.main --config=configs/translate_text.py:runlocal_seq2seq --workdir=runs/translate_s2s
  python -m aigc_jax.baseline --config=configs/translate_text.py:runlocal   # copy / translation memory
  python -m aigc_jax.translate --workdir=runs/translate --to=es < titles.txt

ICD-11 into Spanish: --config.data.pairs=icd11_translation --config.data.languages='("es",)'. Your own parallel
text, prepared by python -m aigc_jax.prepare_text --target_field=...: --config.data.pairs=tfds:NAME
--config.data.data_dir=DIR --config.data.languages='("es",)' (add --config.init_from=runs/translate
--config.data.tokenizer=runs/translate to fine-tune a trained translator, with its tokenizer).

Without a suffix: one causal transformer reading "English: <title> Spanish:" and continuing it (the better
of the two at this budget: docs/reports.md). `*_seq2seq`: the encoder-decoder (models/transformer.py's
EncoderDecoder): the encoder reads "English: <title>", the decoder starts from the target language's cue
(" Spanish:") and cross-attends to it. `*_blocks`: the causal translator with its transformer blocks from a
pretrained language model of its size, its embeddings fresh over its own tokenizer: add
--config.init_from=runs/lm_gpt (a lm_gpt.py:runlocal run; at this budget it does not help: docs/reports.md).

`test` translates every held-out title of every language by beam search at the end: sacrebleu BLEU and chrF
per language (aigc_jax/evals/generation.py). `--config.data.languages='("es","de","fr","pt","vi","el","zh","ja")'`
adds the other catalogues (--config.model.num_labels is not involved: any subset trains the same model).
"""

import ml_collections

from configs import common
from configs import lm_gpt

VARIANTS = ('runlocal', 'test', 'runlocal_seq2seq', 'test_seq2seq', 'runlocal_blocks', 'test_blocks')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/translate_text.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} '
                     '(or none).')
  small = (arg or '').split('_')[0]
  lm = lm_gpt.get_config(small or None)
  c = common.base_config()
  c.data = common.task_text_data(lm.data, 'text_pairs')
  c.data.pairs = 'icd10_translation'
  c.data.languages = ('es', 'de', 'fr')
  c.data.prompt_len = 32         # "English: <title> Spanish:" (99% fit a BPE of 8,192 on the three languages)
  c.data.target_len = 32         # the translation and [EOS] (99% fit)
  c.data.seq_len = 64
  c.data.vocab_size = 8192
  c.data.tokenizer = ''          # trained on the training pairs (both sides, every language)
  common.pair_generator(c, lm, 'translation', val_every=500, val_num=96)
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.batch_size = 64
  c.num_steps = 1_000            # 2.4 passes over the 27,142 training pairs
  c.log_every = 100
  c.checkpoint_every = 500
  if small == 'test':
    common.tiny_trainer(c)
    c.data.languages = ('es',)
    c.data.vocab_size = 512
    c.data.prompt_len, c.data.target_len, c.data.seq_len = 24, 16, 40
    c.model.max_len = c.data.seq_len
    c.evals.val.every = 0
    c.evals.test.num = 6
    c.evals.test.beam = 2
  if (arg or '').endswith('seq2seq'):
    c.model.name = 'encoder_decoder'
    c.model.encoder_depth = c.model.depth
    c.data.layout = 'encoder_decoder'   # source: the English title; decoder: " Spanish:" + translation
    c.data.seq_len = c.data.target_len + 4          # room for the cue (a longer one is refused by name)
    c.model.max_len = max(c.data.prompt_len, c.data.seq_len)
  if (arg or '').endswith('_blocks'):
    # The pretrained language model's blocks and final norm (same width, depth and heads: lm_gpt:<size>);
    # the embeddings start fresh, since this vocabulary (both languages) is not the LM's (English).
    for i in range(c.model.depth):
      c.init_parts[f'block_{i}'] = f'block_{i}'
    c.init_parts.ln_final = 'ln_final'
  c.evals.test.every = c.num_steps   # once, at the end
  return c

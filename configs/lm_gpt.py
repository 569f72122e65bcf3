r"""A GPT-2-style causal language model pretrained on real medical text: the ICD-10-CM tabular list and the
Indiana University chest X-ray reports (aigc_jax/text/corpora.py), with a byte-level BPE tokenizer trained
on their training split at the first start and kept in the workdir.

  python -m aigc_jax.main --config=configs/lm_gpt.py:runlocal --workdir=runs/lm_gpt   # CPU, minutes
  python -m aigc_jax.main --config=configs/lm_gpt.py:runlocal_small --workdir=runs/lm_small   # the image
                                                      # reporter's decoder size (report_image.py:runlocal_lm)
  python -m aigc_jax.main --config=configs/lm_gpt.py --workdir=runs/lm_gpt_full       # accelerator
  python -m aigc_jax.evaluate --workdir=runs/lm_gpt                                   # held-out perplexity

`val` scores every held-out (validation) token beside a Kneser–Ney bigram fit on the same training tokens;
`samples` writes sampled continuations of held-out documents. Batches are rows of `seq_len` tokens, packed
across documents with attention kept inside each document.
"""

import ml_collections

from configs import common


def transformer(data: ml_collections.ConfigDict, *, causal: bool, width: int, depth: int, heads: int
                ) -> ml_collections.ConfigDict:
  """`config.model` of a language model over `data`'s vocabulary and row length."""
  m = ml_collections.ConfigDict()
  m.name = 'transformer'
  m.vocab_size = data.get_ref('vocab_size')
  m.max_len = data.get_ref('seq_len')
  m.width = width
  m.depth = depth
  m.heads = heads
  m.mlp_ratio = 4
  m.causal = causal
  m.dtype = 'float32'            # 'bfloat16' on accelerators: activations in bf16, parameters in float32
  m.remat = False                # recompute each block's activations in the backward pass
  m.attention = 'auto'           # einsum on CPU, jax.nn.dot_product_attention (cuDNN) elsewhere
  return m


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.text_data(seq_len=256)
  c.model = transformer(c.data, causal=True, width=512, depth=8, heads=8)
  c.task = ml_collections.ConfigDict({'name': 'language_model', 'objective': 'causal', 'mask_rate': 0.15})
  c.evals.val = common.evaluator('perplexity', every=2_000, split='validation', batch=32)
  c.evals.samples = common.evaluator('text_samples', every=2_000, num=8, prompt_tokens=16, new_tokens=64)

  c.optim.name = 'adam'
  c.optim.learning_rate = 6e-4
  c.optim.b2 = 0.95
  c.optim.weight_decay = 0.1     # θ ← θ − η∇L − ηλθ on kernels and embeddings (core/optim.py)
  c.optim.warmup_steps = 1_000
  c.optim.ema_decay = 0.0        # evaluate the trained weights, as language-model papers do
  c.num_steps = 50_000
  c.batch_size = 64
  c.log_every = 100
  c.checkpoint_every = 2_000

  if arg in ('runlocal', 'runlocal_small'):
    c.data.seq_len = 128
    c.data.vocab_size = 4096
    c.model.width, c.model.depth, c.model.heads = 256, 4, 4
    c.batch_size = 32             # 4,096 tokens a step
    c.num_steps = 600              # 2.5M tokens: about one pass over the 2.2M training tokens
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 60
    c.log_every = 50
    c.checkpoint_every = 200
    c.evals.val.every = 200
    c.evals.samples.every = 600
    if arg == 'runlocal_small':
      # The decoder of report_image.py:runlocal (so it can start from this run: its runlocal_lm), 742k
      # parameters: two passes in 5 minutes on 2 cores.
      c.data.vocab_size = 1024
      c.model.width, c.model.depth, c.model.heads = 128, 3, 4
      c.num_steps = 1_200
      c.evals.samples.every = 1_200
  elif arg == 'test':
    common.tiny_trainer(c)
    tiny_text(c)
  elif arg:
    raise ValueError(f'configs/lm_gpt.py: unknown variant {arg!r}; use one of: runlocal, runlocal_small, test '
                     '(or none).')
  return c


def tiny_text(c: ml_collections.ConfigDict) -> None:
  """The test variant's data and model: 300 documents of each corpus, 32-token rows, a 2-block model."""
  c.data.max_documents = 300
  c.data.seq_len = 32
  c.data.vocab_size = 512
  c.data.val_fraction = 0.2
  c.model.width, c.model.depth, c.model.heads = 32, 2, 2
  c.evals.val.batch = 8
  c.evals.val.max_rows = 8
  if 'samples' in c.evals:
    c.evals.samples.num, c.evals.samples.prompt_tokens, c.evals.samples.new_tokens = 2, 8, 8

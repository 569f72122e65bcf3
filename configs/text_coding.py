r"""Automatic coding of real radiology reports: the Indiana University chest X-ray reports (FINDINGS and
IMPRESSION) → their MeSH major headings, multi-label, binary cross-entropy; optionally fine-tuned from a
pretraining run of configs/lm_gpt.py (or lm_bert.py with the `bert` variants).

  python -m aigc_jax.main --config=configs/lm_gpt.py:runlocal --workdir=runs/lm_gpt
  python -m aigc_jax.main --config=configs/text_coding.py:runlocal --workdir=runs/coding_ft \
      --config.init_from=runs/lm_gpt        # fine-tune: its parameters and tokenizer, a fresh head
  python -m aigc_jax.main --config=configs/text_coding.py:runlocal --workdir=runs/coding_scratch \
      --config.data.tokenizer=runs/lm_gpt   # the same model and tokenizer from random weights
  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal   # TF-IDF + logistic regression

`val` monitors the validation split while training; `test` scores the test split once, at the end, with
thresholds tuned on validation. The splits are by report, with the shares of the pretraining text source
(configs/common.py TEXT_HELD_OUT), so no validation or test report was pretrained on.

`runlocal_padchest`: PadChest's Spanish reports → its radiological labels (aigc_jax/text/coding.py), trained
from scratch with a tokenizer of its own training reports (the pretraining corpora are English), tested on
the physician-labelled reports (`test`) and on those of them whose text never occurs in training
(`test_unseen`):

  python -m aigc_jax.main --config=configs/text_coding.py:runlocal_padchest --workdir=runs/padchest
  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal_padchest

`runlocal_icd10cm`: ICD-10-CM code assignment, a clinical phrase (an inclusion term) → its category, trained
from scratch on the titles of every category and subcategory and the other inclusion terms. Not fine-tuned
from lm_gpt: its pretraining text (the icd10cm corpus) contains the held-out phrases. Its baseline is the
nearest training phrase by TF-IDF (1,918 one-vs-rest regressions would take hours):

  python -m aigc_jax.main --config=configs/text_coding.py:runlocal_icd10cm --workdir=runs/icd10cm
  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal_icd10cm --coding_baseline=nearest

`runlocal_clinosim`: synthetic SOAP notes (clinosim, simulated on first use into ~/.cache/aigc_jax, ~75 s)
→ the ICD-10-CM categories of the encounter's diagnosis and the chronic conditions the notes address, every
diagnosis name masked (aigc_jax/text/clinosim_notes.py); split by patient, trained from scratch:

  python -m aigc_jax.main --config=configs/text_coding.py:runlocal_clinosim --workdir=runs/clinosim
  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal_clinosim
"""

import ml_collections

from configs import common
from configs import lm_gpt

VARIANTS = ('runlocal', 'runlocal_bert', 'runlocal_padchest', 'runlocal_icd10cm', 'runlocal_clinosim', 'test',
            'test_padchest', 'test_clinosim')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/text_coding.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} '
                     '(or none).')
  bert = arg == 'runlocal_bert'
  padchest = arg in ('runlocal_padchest', 'test_padchest')
  lm = lm_gpt.get_config('test' if arg in ('test', 'test_padchest', 'test_clinosim') else 'runlocal' if arg else None)
  c = common.base_config()
  c.data = common.task_text_data(lm.data, 'text_labels')
  c.data.task = 'iu_mesh'
  c.data.min_count = 30
  c.data.tokenizer = ''    # empty: the init_from run's when fine-tuning (registry.build_data), else trained
  c.data.seed = c.get_ref('seed')            # --config.seed=N draws another order of the reports too
  c.data.tokenizer_kind = 'wordpiece' if bert else 'bpe'
  c.model = ml_collections.ConfigDict(lm.model.to_dict())
  c.model.vocab_size = c.data.get_ref('vocab_size')
  c.model.max_len = lm.data.seq_len   # the pretrained position table; rows may be shorter
  c.model.name = 'text_classifier'
  c.model.causal = not bert
  c.model.num_labels = 41        # the IU MeSH headings with ≥ 30 training reports at the default split
  c.task = ml_collections.ConfigDict({'name': 'text_classification', 'loss': 'bce'})
  c.evals.val = common.evaluator('coding', every=100, split='validation', tune_on='validation')
  c.evals.test = common.evaluator('coding', every=0, split='test', tune_on='validation')

  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-4
  c.optim.weight_decay = 0.01
  c.optim.warmup_steps = 50
  c.optim.ema_decay = 0.0
  # The fresh head learns at 100× the body's rate: the pooled states vary little (std ≈ 0.3), so at the body's
  # rate the head moves its logits too slowly and 300 steps end at the label priors (docs/text.md).
  c.optim.groups.cls_head = ml_collections.ConfigDict({'learning_rate': 3e-2})
  c.batch_size = 32
  c.num_steps = 300              # 3 passes over the 3,185 training reports
  c.log_every = 50
  c.checkpoint_every = 300
  c.evals.test.every = c.num_steps   # once, at the end
  if arg in ('runlocal', 'runlocal_bert'):
    c.data.seq_len = 96            # 95% of the reports fit (median 45 BPE tokens): less padding to compute
  if padchest:
    c.data.task = 'padchest'
    c.data.val_fraction = 0.05     # of the labeller-annotated studies, by patient; test is the physicians'
    c.data.seq_len = 40            # 96% of the reports fit (mean 15 BPE tokens): little padding to compute
    c.model.num_labels = 149       # the labels with ≥ 30 training reports
    c.evals.test_unseen = common.evaluator('coding', every=0, split='test_unseen', tune_on='validation')
    c.batch_size = 128
    c.num_steps = 600              # one pass over the 79,222 training reports
    c.log_every = 100
    c.checkpoint_every = c.num_steps
    c.evals.val.every = 300
    c.evals.test.every = c.evals.test_unseen.every = c.num_steps
  if arg == 'runlocal_icd10cm':
    c.data.task = 'icd10cm_terms'
    c.task.loss = 'softmax'        # one category per phrase: see tasks/text_classification.py
    c.data.min_count = 1
    c.data.val_fraction, c.data.test_fraction = 0.1, 0.2   # of the inclusion terms, by phrase
    c.data.seq_len = 32            # 99% of the phrases fit
    c.model.num_labels = 1_918     # the categories (every one has titles in training)
    c.batch_size = 128
    c.num_steps = 800              # 1.8 passes over the 55,675 training phrases
    c.log_every = 100
    c.checkpoint_every = c.num_steps
    c.evals.val.every = 400
    c.evals.test.every = c.num_steps
  if arg in ('runlocal_clinosim', 'test_clinosim'):
    c.data.task = 'clinosim_notes'
    # The simulation (the data set), fixed while --config.seed varies the model: 2,000 patients over 2025.
    c.data.clinosim = ml_collections.ConfigDict({'patients': 2_000, 'seed': 0, 'start': '2025-01-01',
                                                 'end': '2025-12-31', 'cache_dir': ''})
    c.data.val_fraction, c.data.test_fraction = 0.1, 0.2   # of the patients
    c.data.min_count = 20
    c.data.seq_len = 256           # 60% of the encounters fit (median 224 BPE tokens); the rest lose late notes
    c.model.max_len = c.data.seq_len   # from scratch: lm_gpt:runlocal's position table has 128 rows
    c.model.num_labels = 34        # the categories with ≥ 20 training encounters
    c.batch_size = 32
    c.num_steps = 300              # 2.2 passes over the 4,346 training encounters, ~12 min on 2 cores
    c.log_every = 50
    c.checkpoint_every = c.num_steps
    c.evals.val.every = 150
    c.evals.test.every = c.num_steps
  if arg == 'test_clinosim':
    common.tiny_trainer(c)
    c.data.clinosim.update(patients=200, start='2025-01-01', end='2025-02-28')
    c.data.seq_len = 64
    c.data.min_count = 5
    c.model.num_labels = 19        # the categories with ≥ 5 training encounters of the small simulation
    c.evals.val.every = 0
    c.evals.test.every = c.num_steps
  if arg == 'test_padchest':
    common.tiny_trainer(c)
    c.data.seq_len = 32
    c.data.min_count = 2_000
    c.model.num_labels = 18        # the labels with ≥ 2,000 training reports
    c.evals.val.every = 0
    c.evals.test.every = c.evals.test_unseen.every = c.num_steps
  if arg == 'test':
    common.tiny_trainer(c)
    c.data.seq_len = 32
    c.data.min_count = 100
    c.model.num_labels = 14        # the headings with ≥ 100 training reports at the test split
    c.evals.test.every = 4
  return c

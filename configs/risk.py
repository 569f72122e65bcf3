r"""Risk prediction on real patient cohorts with binary cross-entropy: an MLP on the encoded features
(aigc_jax/tabular/cohorts.py), beside logistic regression and gradient boosting on the same split.

  python -m aigc_jax.main --config=configs/risk.py:runlocal --workdir=runs/risk_flchain      # CPU, a minute
  python -m aigc_jax.main --config=configs/risk.py:runlocal_pima --workdir=runs/risk_pima
  python -m aigc_jax.main --config=configs/risk.py:runlocal_breast_cancer --workdir=runs/risk_breast
  python -m aigc_jax.baseline --config=configs/risk.py:runlocal     # logistic regression, gradient boosting

Cohorts: flchain (death within 5 and 10 years, censored outcomes masked), pima (diabetes), breast_cancer
(malignant). `val` scores the validation split while training; `test` scores the test split once, at the end.
The split is by patient and does not move with --config.seed, which moves the initialization, dropout and
order. With no variant: the full recipe (a wider, deeper MLP trained longer on flchain).
"""

import ml_collections

from configs import common

VARIANTS = ('runlocal', 'runlocal_pima', 'runlocal_breast_cancer', 'test')
OUTCOMES = {'flchain': 2, 'pima': 1, 'breast_cancer': 1}   # labels per cohort (cohorts.py)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/risk.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} (or none).')
  cohort = arg.split('runlocal_', 1)[1] if arg and arg.startswith('runlocal_') else 'flchain'
  c = common.base_config()
  c.data = ml_collections.ConfigDict({
      'name': 'tabular', 'cohort': cohort, 'val_fraction': 0.15, 'test_fraction': 0.25, 'split': 'train',
      'shuffle': True, 'num_threads': 1, 'num_workers': 0, 'prefetch': 4})
  c.data.seed = c.get_ref('seed')     # --config.seed=N draws another order too
  c.model = ml_collections.ConfigDict({'name': 'tabular_mlp', 'hidden': (256, 256, 256),
                                       'num_labels': OUTCOMES[cohort], 'dropout': 0.2})
  c.task = ml_collections.ConfigDict({'name': 'risk'})
  c.evals.val = common.evaluator('risk', every=500, split='validation')
  c.evals.test = common.evaluator('risk', every=0, split='test')

  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.weight_decay = 1e-4
  c.optim.warmup_steps = 100
  c.optim.ema_decay = 0.0
  c.batch_size = 128
  c.num_steps = 4000
  c.log_every = 200
  c.checkpoint_every = 2000
  if arg and arg.startswith('runlocal'):
    c.model.hidden = (64, 64)
    c.model.dropout = 0.1
    # flchain: 4,478 training patients, ~30 passes; the small cohorts (~300 patients) overfit sooner.
    c.num_steps = 1000 if cohort == 'flchain' else 300
    c.evals.val.every = 100
    c.log_every = 100
    c.checkpoint_every = c.num_steps
  if arg == 'test':
    common.tiny_trainer(c)
    c.model.hidden = (16,)
  c.evals.test.every = c.num_steps   # once, at the end
  return c

r"""The CT feature network behind the offline FID/KID/precision-recall (aigc_jax/imaging/features.py), trained
through the one trainer as a classification task: lesion kind (cross-entropy), slice level (squared error,
weight 10) and the HU histogram of the slice (cross-entropy), on 4,096 phantom slices at seed 7000 (apart from
every generative run's seeds), 32×32, noise of a random strength added.

  python -m aigc_jax.train_features --workdir=runs/ct_features --out=FILE.msgpack   # trains, then exports
  python -m aigc_jax.main --config=configs/ct_features.py --workdir=runs/ct_features  # trains only

The `kind` evaluator scores the lesion-kind head on 512 held-out slices (seed 7001): accuracy, balanced
accuracy, log loss and a confusion matrix.
"""

import ml_collections

from configs import common

TRAIN_SEED = 7_000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=32)
  c.data.seed = TRAIN_SEED
  c.data.num_train = 4_096
  c.data.lesion_prob = 0.5
  c.data.labels = ('level', 'lesion_kind')

  c.model = ml_collections.ConfigDict()
  c.model.name = 'ct_feature_net'
  c.model.channels = (32, 64, 128)
  c.model.num_classes = 3        # lesion kind: none, lung nodule, liver mass
  c.model.bins = 16

  c.task = ml_collections.ConfigDict()
  c.task.name = 'classification'
  c.task.label = 'lesion_kind'
  c.task.num_classes = 3
  c.task.regression = ml_collections.ConfigDict({'level': 10.0})
  c.task.histogram_weight = 1.0
  c.task.input_noise = 0.05      # the features must not hinge on noise-free pixels: samples have some
  c.evals.kind = common.evaluator('classification', every=250, num=512,
                                  class_names=('none', 'lung nodule', 'liver mass'))

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 0
  c.optim.end_lr_factor = 0.0
  c.optim.grad_clip_norm = 0.0
  c.optim.ema_decay = 0.0        # the exported weights are the trained ones
  c.num_steps = 1_000
  c.batch_size = 64
  c.log_every = 50
  c.checkpoint_every = 500

  if arg == 'test':
    common.tiny_trainer(c)
    c.data.num_train = 64
    c.model.channels = (8, 8, 8)
    c.evals.kind.num = 16
    c.evals.kind.batch = 8
  elif arg:
    raise ValueError(f'configs/ct_features.py: unknown variant {arg!r}; use: test (or none: it trains on a CPU '
                     'in minutes).')
  return c

r"""A CT lesion classifier as a diagnostic model: which lesion a phantom slice shows (none, lung nodule, liver
mass), read by the small CNN of the feature network (`ct_feature_net`) and trained with cross-entropy alone,
on 4,096 slices at seed 8000 (apart from ct_features' 7000 and every generative run's seeds), half of them
with a lesion, 32×32, a little noise of a random strength added.

  python -m aigc_jax.main --config=configs/ct_classify.py --workdir=runs/ct_classify            # full recipe
  python -m aigc_jax.main --config=configs/ct_classify.py:runlocal --workdir=runs/ct_classify_local  # CPU, ~3 min
  python -m aigc_jax.main --config=configs/ct_classify.py:runlocal_public --workdir=runs/ct_classify_public
  python -m aigc_jax.main --config=configs/ct_classify.py:runlocal_dp --workdir=runs/ct_classify_dp \
      --config.init_from=runs/ct_classify_public                                                 # DP-SGD
  python -m aigc_jax.main --config=configs/ct_classify.py:runlocal_pgd --workdir=runs/ct_classify_pgd  # PGD-AT

The `diagnosis` evaluator scores held-out slices (seed 8001): accuracy, balanced accuracy, log loss and the
confusion matrix; for "abnormal" (any lesion, by 1 − p(none)) AUROC, AUPRC and sensitivity at 90 % and 95 %
specificity; each kind's one-vs-rest AUROC; the calibration error of the top-label confidence with a
reliability plot (aigc_jax/evals/classification.py).

The `robust` evaluator (at the last step) scores the same decisions on held-out slices perturbed by FGSM and
PGD of 2, 5 and 10 HU (L∞) and an RMS of 5 HU (L2); `runlocal_pgd` trains with PGD-AT at 10 HU.

`runlocal_dp` trains on the same private slices with DP-SGD (config.privacy): Poisson batches of 256 expected
slices, each slice's gradient clipped to norm 1, noise σ = 1, 300 steps (ε ≈ 8.2 at δ = 1e-5); the ε spent is
logged as privacy/epsilon and written to <workdir>/privacy.json. From scratch it stays at chance; from the
non-private `runlocal_public` run (other slices, standing for public data) it is a DP fine-tune.

`runlocal_vae` is the classifier on the encoder of configs/ct_vae.py:runlocal (its levels, up to the latent
projection, mean-pooled, and a linear head): from scratch, or — pretrain → fine-tune on the imaging side —
started from a trained autoencoder's encoder, the head fresh (config.init_parts; aigc_jax/core/warm_start.py):

  python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae
  python -m aigc_jax.main --config=configs/ct_classify.py:runlocal_vae --workdir=runs/ct_classify_vae \
      --config.init_from=runs/ct_vae

`runlocal_unet` is the same on the down path and middle block of configs/ct.py:runlocal's diffusion U-Net
(told timestep 0: a clean slice), started from a trained diffusion run with --config.init_from=runs/ct_local;
`runlocal_unet_dp` fine-tunes it with runlocal_dp's DP-SGD (the diffusion run's slices standing for public,
unlabelled data).
"""

import ml_collections

from configs import common
from configs import ct
from configs import ct_vae

TRAIN_SEED = 8_000  # held-out data is seed + 1 (pipeline.held_out_source)
PUBLIC_SEED = 9_000  # runlocal_public: a stand-in for public data, apart from the private slices above
CLASS_NAMES = ('none', 'lung nodule', 'liver mass')
VARIANTS = ('runlocal', 'runlocal_public', 'runlocal_dp', 'runlocal_pgd', 'runlocal_vae', 'runlocal_unet',
            'runlocal_unet_dp', 'test')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '') + VARIANTS:
    raise ValueError(f'configs/ct_classify.py: unknown variant {arg!r}; use one of: {", ".join(VARIANTS)} '
                     '(or none: the full recipe).')
  c = common.base_config()
  c.data = common.ct_data(size=32)
  c.data.seed = TRAIN_SEED
  c.data.num_train = 4_096
  c.data.lesion_prob = 0.5       # normal/abnormal balanced; masses need liver in the slice: ~1 in 8 abnormal
  c.data.labels = ('lesion_kind',)

  c.model = ml_collections.ConfigDict()
  c.model.name = 'ct_feature_net'
  c.model.channels = (32, 64, 128)
  c.model.num_classes = len(CLASS_NAMES)

  c.task = ml_collections.ConfigDict()
  c.task.name = 'classification'
  c.task.label = 'lesion_kind'
  c.task.num_classes = len(CLASS_NAMES)
  c.task.regression = ml_collections.ConfigDict()
  c.task.histogram_weight = 0.0  # the model's histogram head is left untrained: no part of the diagnosis
  c.task.input_noise = 0.02      # mild: robustness to noise without hiding small nodules
  # Adversarial training (aigc_jax/tasks/adversarial_training.py): '' off, 'pgd' (PGD-AT) or 'trades'.
  c.task.adversarial = ml_collections.ConfigDict({'kind': '', 'eps_hu': 10.0, 'steps': 3, 'beta': 6.0})
  c.evals.diagnosis = common.evaluator('classification', every=500, num=2_048, class_names=CLASS_NAMES,
                                       specificities=(0.9, 0.95), bins=10)
  # Accuracy / AUROC under FGSM and PGD of a few HU (aigc_jax/evals/robustness.py), at the end of training.
  c.evals.robust = common.evaluator('robustness', every=3_000, num=512, linf_hu=(2.0, 5.0, 10.0),
                                    l2_rms_hu=(5.0,), steps=10)

  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 100
  c.optim.end_lr_factor = 0.0
  c.optim.grad_clip_norm = 0.0
  c.optim.ema_decay = 0.999
  c.num_steps = 3_000
  c.batch_size = 64
  c.log_every = 100
  c.checkpoint_every = 1_000

  if arg in ('runlocal', 'runlocal_public', 'runlocal_dp', 'runlocal_pgd', 'runlocal_vae', 'runlocal_unet',
             'runlocal_unet_dp'):
    # Sized for a 2-core CPU: a smaller network, 2.5–3 minutes (900 steps at ~5.5 steps/s), scored on 512
    # held-out slices. At 600 steps and lr 1e-3 the abnormal AUROC was still 0.69; this reaches ~0.77.
    c.model.channels = (16, 32, 64)
    c.num_steps = 900
    c.log_every = 50
    c.checkpoint_every = 450
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 50
    c.optim.ema_decay = 0.99
    c.evals.diagnosis.every = 300
    c.evals.diagnosis.num = 512
    c.evals.robust.every = c.num_steps
    c.evals.robust.num = 256
  if arg == 'runlocal_vae':
    vae = ct_vae.get_config('runlocal').model
    c.model = ml_collections.ConfigDict({'name': 'vae_encoder_classifier', 'num_classes': len(CLASS_NAMES)})
    for key in ('channels', 'num_res_blocks', 'latent_channels', 'norm_groups'):
      c.model[key] = vae[key]
    c.init_parts.encoder = 'vae/encoder'   # used with --config.init_from=<a ct_vae.py:runlocal run>
  if arg in ('runlocal_unet', 'runlocal_unet_dp'):
    unet = ct.get_config('runlocal').model
    c.model = ml_collections.ConfigDict({'name': 'unet_encoder_classifier', 'num_classes': len(CLASS_NAMES)})
    for key in ('channels', 'attention_levels', 'num_res_blocks', 'head_channels', 'norm_groups'):
      c.model[key] = unet[key]
    c.init_parts.unet = ''                 # the whole tree of --config.init_from=<a ct.py:runlocal run>
  if arg == 'runlocal_pgd':
    # PGD-AT (Madry et al. 2018) at 10 HU (L∞), 3 ascent steps per example: ~4× the step cost of runlocal.
    c.task.adversarial.kind = 'pgd'
  if arg == 'runlocal_public':
    # The non-private pretraining a DP fine-tune starts from: other slices (seed 9000, held out 9001), which
    # stand for data that may be used without privacy (a public dataset).
    c.data.seed = PUBLIC_SEED
  if arg in ('runlocal_dp', 'runlocal_unet_dp'):
    # DP-SGD (config.privacy): Poisson batches of 256 expected slices of the 4,096, each slice's gradient
    # clipped to norm 1, noise σ = 1, 300 steps: ε = 8.18 at δ = 1e-5 (RDP). The noise's norm on the averaged
    # gradient (σC/B · √params ≈ 1.06) dwarfs the signal of 73k parameters: from scratch the model stays at
    # chance (docs/trust.md). Start it from runlocal_public (--config.init_from=<its workdir>): a DP
    # fine-tune at a small rate. No global clip on top of the per-example one.
    c.privacy.enabled = True
    c.privacy.clip_norm = 1.0
    c.privacy.noise_multiplier = 1.0
    c.privacy.delta = 1e-5       # below 1 / 4,096 training slices
    c.batch_size = 256
    c.optim.learning_rate = 2e-4
    c.num_steps = 300
    c.checkpoint_every = 150
    c.evals.diagnosis.every = 150
    c.evals.robust.every = c.num_steps
  elif arg == 'test':
    common.tiny_trainer(c)
    c.data.num_train = 64
    c.model.channels = (8, 8, 8)
    c.evals.diagnosis.num = 32
    c.evals.diagnosis.batch = 16
    c.evals.robust.update({'num': 16, 'batch': 8, 'steps': 2})
  return c

"""Presets shared by every recipe: the trainer, optimizer, mesh and checkpoint fields.

A recipe calls `base_config()` and then fills in its data, model and task. Every field that the trainer
reads exists here, so a typo in `--config.x=...` fails at once instead of being silently ignored.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_steps = 100_000
  c.batch_size = 64              # global, over all processes and devices
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.sync_every = 8               # block on the device at least this often (XLA:CPU collective deadlock)
  c.init_from = ''               # a workdir or checkpoint dir to take params from when the workdir is empty
  # Only these parts of init_from's params, {this model's top-level name: 'path/in/that/run'}; the rest fresh
  # (aigc_jax/core/warm_start.py: a classifier on a pretrained autoencoder's encoder).
  c.init_parts = ml_collections.ConfigDict()
  # Evaluators run on held-out data at their own interval and at the last step (aigc_jax/core/evaluation.py):
  # evals.<name> = evaluator(type, every=steps, <its fields>); types are registered in aigc_jax/registry.py.
  # They log <name>/<key> scalars, images (also <workdir>/<name>/<key>_<step>.png) and texts; every=0 skips.
  c.evals = ml_collections.ConfigDict()

  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = -1        # -1: all devices
  c.mesh.data = -1               # -1: whatever the other axes leave
  c.mesh.fsdp = 1
  c.mesh.tensor = 1              # tensor-parallel devices share examples and split kernels by the rules
  c.mesh.fsdp_min_size = 2 ** 14  # parameters smaller than this stay replicated
  # Logical axis (named by the models) → mesh axis or None. Convs: output channels over fsdp, input channels
  # over tensor; dense layers and attention: Megatron-style, features/heads over tensor, the rest over fsdp.
  c.mesh.rules = (('conv_in', 'tensor'), ('conv_out', 'fsdp'), ('embed', 'fsdp'), ('mlp', 'tensor'),
                  ('heads', 'tensor'), ('kv', None), ('vocab', 'tensor'))

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adam'          # sgd, or any optax.scale_by_<name>: adam, lion, rms, amsgrad, belief, …
  c.optim.learning_rate = 2e-4
  c.optim.warmup_steps = 1_000
  c.optim.end_lr_factor = 0.1    # cosine decays to learning_rate * end_lr_factor
  c.optim.weight_decay = 0.0
  c.optim.grad_clip_norm = 1.0   # 0 disables clipping
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.momentum = 0.9         # sgd only
  c.optim.extra = ml_collections.ConfigDict()  # further keywords for optax.scale_by_<name>
  c.optim.frozen = ()            # parameter paths ('vae', 'encoder/conv_0') that get no update and no state
  c.optim.ema_decay = 0.9999     # reached after a warm-up min(decay, (1+t)/(10+t)); 0 disables EMA
  # Per-network optimizers for tasks with several (a GAN's 'gen' and 'disc'): {top-level param key: {field:
  # value}}, e.g. groups.disc.learning_rate; fields not given are the ones above. Empty: one optimizer.
  c.optim.groups = ml_collections.ConfigDict()

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.max_to_keep = 3
  c.checkpoint.async_save = True

  # Differentially private training (DP-SGD, aigc_jax/core/privacy/accountant.py): Poisson sampling with
  # batch_size as the expected batch, each example's gradient clipped to clip_norm, noise σ·clip_norm per step.
  c.privacy = ml_collections.ConfigDict()
  c.privacy.enabled = False
  c.privacy.clip_norm = 1.0
  c.privacy.noise_multiplier = 0.0   # σ; leave 0 and set target_epsilon to have σ computed for num_steps
  c.privacy.target_epsilon = 0.0
  c.privacy.delta = 1e-5             # must be below 1 / (training examples)
  c.privacy.accountant = 'rdp'       # or 'pld'
  c.privacy.epsilon_budget = 0.0     # > 0: refuse a run whose planned steps would spend more ε
  c.privacy.microbatches = 1         # per-example gradients in this many sequential chunks (memory)
  c.privacy.secure = True            # noise and draws from a secret seed in <workdir>/privacy_secret, not c.seed
  return c


def tiny_trainer(c: ml_collections.ConfigDict) -> None:
  """The trainer fields of every recipe's `test` variant: 4 steps of batch 8 (on 16×16 images, for image
  data), logging, evaluating and checkpointing often enough that tests see each of them (call it after
  `c.evals` is set)."""
  c.num_steps = 4
  c.batch_size = 8
  c.log_every = 2
  for ev in c.evals.values():
    ev.every = 4
  c.checkpoint_every = 2
  if 'image_size' in c.data:
    c.data.image_size = 16
  c.optim.warmup_steps = 2
  c.optim.ema_decay = 0.9


def evaluator(kind: str, every: int, **fields) -> ml_collections.ConfigDict:
  """One entry of `config.evals`: its registered type, its interval in steps and its own fields."""
  return ml_collections.ConfigDict({'type': kind, 'every': every, **fields})


def ct_data(size: int) -> ml_collections.ConfigDict:
  """The built-in phantom CT source, windowed to [-1, 1]."""
  d = ml_collections.ConfigDict()
  d.name = 'phantom_ct'
  d.image_size = size
  d.num_train = 1 << 20          # one "epoch" of the unbounded phantom; each index is a different slice
  d.seed = 0
  d.window_lo = -1000.0          # HU mapped to -1
  d.window_hi = 1000.0           # HU mapped to +1
  d.lesion_prob = 0.3            # share of phantom slices with a lung nodule or liver mass
  d.labels = ()                  # label keys to put in each batch, e.g. ('lesion', 'level') for conditioning
  # Low-/full-dose pairs from the CT acquisition model (batches then carry 'low_dose' too).
  d.pairs = False
  # Dose: photons per mm² over the scan, independent of the grid (aigc_jax/imaging/acquisition.py). The default
  # gives σ ≈ 15 HU in the centre of a 300 mm water cylinder (an adult abdomen; smaller patients are less noisy).
  d.full_dose = 1.25e9           # clinical full dose (σ ≈ 15 HU); acquisition.FULL_DOSE
  d.low_dose_fraction = 0.25     # the low-dose input: a quarter of full dose (σ ≈ 30 HU, Mayo LDCT-like)
  d.fov_mm = 400.0               # field of view: the pixel size of the projection geometry
  # Clinical-scale restoration (aigc_jax/data/ct_bank.py): with patch_size > 0 and pairs, training examples are
  # patch_size² crops of image_size² slices scanned once into a cached bank, at doses drawn from dose_fractions.
  d.patch_size = 0               # 0: whole slices, scanned per example
  d.dose_fractions = ()          # (lo, hi) fractions of full_dose, drawn log-uniformly; () = low_dose_fraction
  d.bank_slices = 64             # phantom slices scanned into the training bank (seed)
  d.bank_held_out_slices = 4     # ... into the held-out bank (seed + 1) the evaluators measure on
  d.bank_noise_draws = 2         # quantum-noise images per banked slice
  d.bank_workers = 2             # processes scanning the bank (about 6 s per 512² slice each)
  d.bank_texture_hu = ()         # (lo, hi): tissue texture of that many HU (sd) added to banked slices; () none
  d.bank_fov_range_mm = ()       # (lo, hi): each banked slice's field of view drawn from it; () all at fov_mm
  d.bank_bone_scale = ()         # (lo, hi): each banked slice's bone multiplied by a factor drawn from it; () none
  d.bank_source = ''              # a folder of full-dose CT series: real anatomy scanned into the bank; '' none
  d.bank_source_share = 1.0      # ... the part of the training examples cut from it (the rest: the phantom)
  d.bank_source_slices = 32      # ... evenly spaced slices taken from each of its series
  d.bank_photo_share = 0.0       # part of the training examples cut from photographs scanned as objects (data/photos.py)
  d.bank_photo_spans_hu = (150.0, 1000.0)  # ... each photograph stretched to these HU spans, one object each
  d.cache_dir = '~/.cache/aigc_jax'  # where banks are kept, under ct_bank/<hash of what fixes them>
  # A prepared dataset: name = 'tfds:<name>' (python -m aigc_jax.prepare --output=<data_dir>).
  d.data_dir = ''
  d.split = 'train'
  # Augmentation.
  d.hflip = False                # left-right flip would swap the liver side: off for anatomy
  d.affine_deg = 0.0             # random rotation in [-deg, deg]
  d.affine_scale = 0.0           # random zoom in [1 - s, 1 + s]
  d.affine_shift = 0.0           # random shift, as a fraction of the image side
  d.shuffle = True
  d.num_threads = 1              # grain read threads: the phantom is CPU-bound Python, 2 threads were slower
  d.num_workers = 0              # grain worker processes (0: read in the training process)
  d.prefetch = 4
  return d


TEXT_HELD_OUT = (0.1, 0.1)  # (validation, test) shares of every text source


def task_text_data(lm_data: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A text task's data fields from its language model's (values, not references: the task changes its own
  seq_len or tokenizer without touching the model's), named `name`, without the pretraining corpora."""
  d = ml_collections.ConfigDict(lm_data.to_dict())
  d.name = name
  for key in ('corpora', 'max_documents'):
    del d[key]
  return d


def pair_generator(c: ml_collections.ConfigDict, lm: ml_collections.ConfigDict, evaluator_type: str, *,
                   val_every: int, val_num: int) -> None:
  """The model, task, evaluators and optimizer basics of a conditional generator on 'text_pairs'
  (report_text.py, translate_text.py): `lm`'s transformer over c.data's vocabulary and rows, trained causally
  on the target tokens; `val` decodes the first val_num validation pairs greedily, `test` every test pair by
  beam search (4 beams, length penalty 0.6). Call it after c.data is set."""
  c.data.seed = c.get_ref('seed')
  c.data.layout = 'decoder'      # one causal model reads prompt + target; 'encoder_decoder': see text_pairs.py
  c.model = ml_collections.ConfigDict(lm.model.to_dict())
  c.model.vocab_size = c.data.get_ref('vocab_size')
  c.model.max_len = c.data.seq_len
  c.task = ml_collections.ConfigDict({'name': 'language_model', 'objective': 'causal', 'mask_rate': 0.15})
  c.evals.val = evaluator(evaluator_type, every=val_every, split='validation', num=val_num, beam=0)
  c.evals.test = evaluator(evaluator_type, every=0, split='test', beam=4, length_penalty=0.6)
  c.optim.name = 'adam'
  c.optim.weight_decay = 0.01
  c.optim.ema_decay = 0.0


def text_data(seq_len: int = 128) -> ml_collections.ConfigDict:
  """The language models' text source (aigc_jax/data/text.py): packed rows of real medical text."""
  d = ml_collections.ConfigDict()
  d.name = 'text'
  d.corpora = ('icd10cm', 'iu_reports')   # and/or 'tfds:NAME': your text (python -m aigc_jax.prepare_text)
  d.data_dir = ''                # where the tfds: datasets are (prepare_text's --output)
  d.max_documents = 0            # per corpus, before the split; 0: all
  d.seq_len = seq_len
  d.tokenizer = ''               # a file from python -m aigc_jax.tokenizer; '': train one at start, kept
  d.tokenizer_kind = 'bpe'
  d.vocab_size = 8192
  # Held-out shares, drawn by document group (ICD category, report). The coding tasks split the same way
  # with the same shares, so no report they are tested on was ever pretrained on: change both or neither.
  d.val_fraction, d.test_fraction = TEXT_HELD_OUT
  d.split = 'train'
  d.seed = 0
  d.shuffle = True
  d.num_threads = 1
  d.num_workers = 0
  d.prefetch = 4
  return d

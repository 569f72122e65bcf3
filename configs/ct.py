r"""CT slice synthesis with a denoising diffusion model (the flagship recipe).

Full recipe (GPU / TPU; 128x128, a U-Net of 74M parameters, bf16 compute with fp32 parameters):

  python -m aigc_jax.main --config=configs/ct.py --workdir=runs/ct

Small variant that trains on a 2-core CPU in minutes and still makes CT-like slices:

  python -m aigc_jax.main --config=configs/ct.py:runlocal --workdir=runs/ct_local

Override any field with `--config.<key>=<value>`, e.g. `--config.optim.learning_rate=1e-4`.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=128)

  c.model = ml_collections.ConfigDict()
  c.model.name = 'unet'
  c.model.channels = (128, 256, 256, 512)
  c.model.attention_levels = (False, False, True, True)
  c.model.num_res_blocks = 2
  c.model.head_channels = 64
  c.model.norm_groups = 32
  c.model.dropout = 0.0
  c.model.dtype = 'bfloat16'     # compute dtype; parameters and optimizer state stay float32
  c.model.remat = False          # True: recompute each res block in the backward pass (less memory)
  c.model.attention = 'auto'     # auto | einsum | dot_product (jax.nn.dot_product_attention: cuDNN on GPU)

  c.model.num_classes = 0        # > 0: class-conditional (see task.condition_on)

  c.task = ml_collections.ConfigDict()
  c.task.name = 'diffusion'
  c.task.objective = 'diffusion'  # diffusion | flow (rectified flow, velocity prediction)
  c.task.prediction = 'eps'      # diffusion target: eps | v | x0
  c.task.schedule = 'cosine'     # linear | cosine
  c.task.zero_terminal_snr = False  # rescale to ᾱ_T = 0 (needs v or x0; use timestep_spacing='trailing')
  c.task.timesteps = 1000
  c.task.sampler = 'ddim'        # ddim | ddpm (diffusion); euler | heun (flow)
  c.task.sample_steps = 100      # ddim / flow steps (ddpm always uses all timesteps)
  c.task.timestep_spacing = 'leading'  # ddim: leading | trailing
  # Classifier-free guidance: condition on a label the data puts in each batch (config.data.labels), e.g.
  # --config.task.condition_on=lesion --config.model.num_classes=2 --config.data.labels="('lesion',)".
  c.task.condition_on = ''
  c.task.cond_dropout = 0.1      # share of training labels replaced by "no label"
  c.task.guidance = 1.0          # w: 1 = conditional, > 1 = stronger guidance, 0 = unconditional
  # Stochastic DDIM (eta=1) corrects the denoiser's errors as it goes; with eta=0 a part of a young model's
  # samples keep high-frequency noise (seen on the runlocal variant: 5 of 16 noisy at eta=0, none at eta=1).
  c.task.ddim_eta = 1.0
  # The sample grid and its CT realism scores (HU W1, plausible anatomy, KID) against held-out slices.
  c.evals.samples = common.evaluator('ct_samples', every=5_000, num=16)

  if arg == 'runlocal':
    # Sized for a 2-core CPU: ~0.2 s/step, about 10 minutes in all (see README, "What to expect").
    c.num_steps = 2_500
    c.batch_size = 16
    c.log_every = 50
    c.evals.samples.every = 500
    c.checkpoint_every = 500
    c.data.image_size = 32
    c.model.channels = (16, 32, 64)
    c.model.attention_levels = (False, False, True)
    c.model.num_res_blocks = 1
    c.model.head_channels = 32
    c.model.norm_groups = 8
    c.model.dtype = 'float32'    # bf16 is slower than fp32 on CPUs without AMX
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    c.optim.ema_decay = 0.995
    c.task.sample_steps = 50
  elif arg == 'monai':
    # The PyTorch peer's network (MONAI DiffusionModelUNet, 4,634,305 parameters) at batch 16 of 64×64, for
    # `python -m aigc_jax.benchmark` beside benchmarks/monai_peer.py; it trains like runlocal.
    c.num_steps = 2_500
    c.batch_size = 16
    c.log_every = 50
    c.evals.samples.every = 500
    c.checkpoint_every = 500
    c.data.image_size = 64
    c.model.channels = (64, 128, 128)
    c.model.attention_levels = (False, True, True)
    c.model.num_res_blocks = 1
    c.model.head_channels = 64
    c.model.norm_groups = 32
    c.model.dtype = 'float32'
    c.optim.warmup_steps = 100
    c.task.sample_steps = 50
  elif arg == 'test':
    # Tiny: for tests and smoke runs; seconds per step budget on one CPU core.
    common.tiny_trainer(c)
    c.data.num_threads = 1
    c.model.channels = (8, 16)
    c.model.attention_levels = (False, True)
    c.model.num_res_blocks = 1
    c.model.head_channels = 8
    c.model.norm_groups = 4
    c.model.dtype = 'float32'
    c.task.timesteps = 50
    c.task.sample_steps = 4
    c.evals.samples.num = 8
  elif arg:
    raise ValueError(f'configs/ct.py: unknown variant {arg!r}; use one of: runlocal, monai, test (or none).')
  return c

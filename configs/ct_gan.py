r"""CT slice synthesis with a GAN: DCGAN-style generator and discriminator, non-saturating (or hinge) loss, R1
penalty, both networks updated in one jitted step, EMA generator for sampling.

  python -m aigc_jax.main --config=configs/ct_gan.py:runlocal --workdir=runs/ct_gan   # CPU, minutes
  python -m aigc_jax.evaluate --workdir=runs/ct_gan                                    # the same harness

Separate optimizers: --config.optim.groups.disc.learning_rate=... (and .gen); --config.task.gan_loss=hinge.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=128)

  c.model = ml_collections.ConfigDict()
  c.model.name = 'dcgan'
  c.model.latent_dim = 128
  c.model.gen_channels = (512, 256, 128, 64, 32)
  c.model.disc_channels = (32, 64, 128, 256, 512)
  c.model.image_size = 128       # must equal data.image_size
  c.model.norm_groups = 8
  c.model.dtype = 'float32'

  c.task = ml_collections.ConfigDict()
  c.task.name = 'gan'
  c.task.gan_loss = 'non_saturating'  # non_saturating | hinge
  c.task.r1_gamma = 1.0          # γ of the R1 penalty (γ/2)·E‖∇D(x)‖²; 0 disables
  c.evals.samples = common.evaluator('ct_samples', every=5_000, num=16)

  # Adam with β₁ = 0 is the usual GAN setting (momentum chases a moving target); one group per network.
  c.optim.learning_rate = 2e-4
  c.optim.warmup_steps = 0
  c.optim.end_lr_factor = 1.0    # constant learning rate
  c.optim.grad_clip_norm = 0.0
  c.optim.b1 = 0.0
  c.optim.b2 = 0.99
  c.optim.ema_decay = 0.999
  c.optim.groups.gen = ml_collections.ConfigDict({'learning_rate': 2e-4})
  c.optim.groups.disc = ml_collections.ConfigDict({'learning_rate': 2e-4})
  c.batch_size = 64

  if arg == 'runlocal':
    c.num_steps = 3_000
    c.batch_size = 32
    c.log_every = 100
    c.evals.samples.every = 1_000
    c.checkpoint_every = 1_000
    c.data.image_size = c.model.image_size = 32
    c.model.gen_channels = (64, 32, 16)
    c.model.disc_channels = (16, 32, 64)
    c.optim.groups.gen.learning_rate = 1e-3
    c.optim.groups.disc.learning_rate = 1e-3
    c.optim.ema_decay = 0.995
  elif arg == 'test':
    common.tiny_trainer(c)
    c.model.image_size = 16
    c.model.latent_dim = 16
    c.model.gen_channels = (16, 8)
    c.model.disc_channels = (8, 16)
    c.model.norm_groups = 4
    c.evals.samples.num = 8
  elif arg:
    raise ValueError(f'configs/ct_gan.py: unknown variant {arg!r}; use one of: runlocal, test (or none).')
  return c

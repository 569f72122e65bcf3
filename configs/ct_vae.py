r"""The first stage of latent diffusion: a KL autoencoder for CT slices (L1 + β·KL, optional patch adversarial
term), whose frozen latents configs/ct_ldm.py trains on.

  python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae   # CPU, minutes
  python -m aigc_jax.evaluate --workdir=runs/ct_vae      # reconstruction PSNR/SSIM + prior samples

--config.task.adv_weight=0.1 adds the patch discriminator (its optimizer: config.optim.groups.disc).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=128)

  c.model = ml_collections.ConfigDict()
  c.model.name = 'kl_autoencoder'
  c.model.channels = (64, 128, 256)  # two halvings: latents are image_size / 4 on a side
  c.model.num_res_blocks = 2
  c.model.latent_channels = 4
  c.model.norm_groups = 32
  c.model.dtype = 'float32'

  c.task = ml_collections.ConfigDict()
  c.task.name = 'vae'
  c.task.kl_weight = 1e-4        # β on the mean per-latent KL: small, so latents keep the detail
  c.task.adv_weight = 0.0        # > 0: patch-adversarial term (LDM uses ~0.5 after the L1 has converged)
  c.task.gan_loss = 'hinge'
  c.task.r1_gamma = 0.0
  c.task.disc_channels = (32, 64)
  # Decoded draws from the prior N(0, I) with their CT scores, and held-out slices beside their reconstructions.
  c.evals.samples = common.evaluator('ct_samples', every=5_000, num=16)
  c.evals.reconstruction = common.evaluator('ct_reconstruction', every=5_000, num=16)

  c.optim.learning_rate = 2e-4
  c.optim.ema_decay = 0.999
  c.optim.groups.disc = ml_collections.ConfigDict({'learning_rate': 2e-4, 'b1': 0.5})
  c.batch_size = 32

  if arg == 'runlocal':
    c.num_steps = 1_500
    c.batch_size = 16
    c.log_every = 50
    c.evals.samples.every = c.evals.reconstruction.every = 500
    c.checkpoint_every = 500
    c.data.image_size = 32
    c.model.channels = (16, 32, 64)
    c.model.num_res_blocks = 1
    c.model.norm_groups = 8
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    c.optim.ema_decay = 0.99
  elif arg == 'test':
    common.tiny_trainer(c)
    c.model.channels = (8, 16)
    c.model.num_res_blocks = 1
    c.model.norm_groups = 4
    c.task.disc_channels = (8,)
    c.evals.samples.num = c.evals.reconstruction.num = 8
  elif arg:
    raise ValueError(f'configs/ct_vae.py: unknown variant {arg!r}; use one of: runlocal, test (or none).')
  return c

r"""The second stage of latent diffusion: a diffusion U-Net on the frozen, rescaled latents of a trained
autoencoder (configs/ct_vae.py), samples decoded back to HU.

  python -m aigc_jax.main --config=configs/ct_vae.py:runlocal --workdir=runs/ct_vae
  python -m aigc_jax.main --config=configs/ct_ldm.py:runlocal --workdir=runs/ct_ldm \
      --config.task.autoencoder=runs/ct_vae
  python -m aigc_jax.evaluate --workdir=runs/ct_ldm

Every diffusion field of configs/ct.py applies (objective, prediction, sampler, guidance, …).
"""

import ml_collections

from configs import ct


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = {'runlocal': 'runlocal', 'test': 'test'}.get(arg or '', None)
  if arg and variant is None:
    raise ValueError(f'configs/ct_ldm.py: unknown variant {arg!r}; use one of: runlocal, test (or none).')
  c = ct.get_config(variant)
  c.task.name = 'latent_diffusion'
  c.task.autoencoder = ''        # the autoencoder's workdir (required)
  c.task.autoencoder_step = 0    # its checkpoint to freeze into this run (0: newest; the one used is recorded)
  c.task.scale_examples = 512    # training images whose latents set the scale factor 1 / std
  # Latents are a quarter of the image side: the U-Net works at 32×32 for 128×128 slices.
  c.model.channels = (128, 256, 512)
  c.model.attention_levels = (False, True, True)
  if arg == 'runlocal':
    # 8×8×4 latents of the 32×32 runlocal autoencoder: a small U-Net, two levels.
    c.model.channels = (64, 128)
    c.model.attention_levels = (False, True)
    c.model.head_channels = 32
    c.model.norm_groups = 8
    c.num_steps = 2_500
  elif arg == 'test':
    c.task.scale_examples = 16
    c.model.channels = (8,)
    c.model.attention_levels = (True,)
  return c

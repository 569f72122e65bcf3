r"""Low-dose CT restoration: a residual encoder-decoder (RED-CNN) or the classic conv autoencoder, trained
with MSE on (quarter-dose, full-dose) pairs from the CT acquisition model.

  python -m aigc_jax.main --config=configs/ct_denoise.py:runlocal --workdir=runs/ct_denoise   # CPU, minutes
  python -m aigc_jax.evaluate --workdir=runs/ct_denoise      # PSNR / SSIM / RMSE beside the low-dose input

Choose the network with --config.model.name=conv_autoencoder (then --config.model.output=linear|sigmoid).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=128)
  c.data.pairs = True            # batches: 'low_dose' (input) and 'image' (full-dose target)
  c.data.num_workers = 4         # the acquisition model (radon + FBP twice) is the costly part of a step

  c.model = ml_collections.ConfigDict()
  c.model.name = 'red_cnn'       # red_cnn | conv_autoencoder
  c.model.features = 96
  c.model.kernel = 5
  c.model.depth = 5
  c.model.dtype = 'float32'

  c.task = ml_collections.ConfigDict()
  c.task.name = 'restoration'
  # Held-out low-dose | restored | full-dose triplets, with PSNR of the restored and of the input slices.
  c.evals.restoration = common.evaluator('ct_restoration', every=5_000, num=16)
  # At the last step: PSNR at other doses than trained at, and under PGD of 5 / 10 HU (aigc_jax/evals/robustness.py).
  c.evals.shift = common.evaluator('restoration_robustness', every=50_000, num=32, dose_fractions=(0.1, 0.5, 1.0),
                                   linf_hu=(5.0, 10.0), steps=10)

  c.optim.learning_rate = 1e-4
  c.optim.ema_decay = 0.999
  c.num_steps = 50_000
  c.batch_size = 32

  if arg == 'runlocal':
    c.num_steps = 600
    c.batch_size = 16
    c.log_every = 50
    c.evals.restoration.every = 300
    c.checkpoint_every = 300
    c.data.image_size = 64
    c.data.num_workers = 2
    c.model.features = 32
    c.model.kernel = 3
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 50
    c.optim.ema_decay = 0.99
    c.evals.restoration.num = 8
    c.evals.shift.every = c.num_steps
    c.evals.shift.num = 16
  elif arg == 'test':
    common.tiny_trainer(c)
    c.data.num_workers = 0
    c.model.features = 8
    c.model.kernel = 3
    c.model.depth = 3
    c.evals.restoration.num = 8
    del c.evals['shift']  # minutes of attacks and acquisitions; tests/test_robustness.py adds and runs it
  elif arg:
    raise ValueError(f'configs/ct_denoise.py: unknown variant {arg!r}; use one of: runlocal, test (or none).')
  return c

r"""Low-dose CT restoration: a residual encoder-decoder (RED-CNN) or the classic conv autoencoder, trained
with MSE on (low-dose, noiseless) pairs from the CT acquisition model, at clinical scale.

  python -m aigc_jax.main --config=configs/ct_denoise.py:runlocal --workdir=runs/ct_denoise   # CPU, minutes
  python -m aigc_jax.evaluate --workdir=runs/ct_denoise      # PSNR / SSIM / RMSE beside the low-dose input
  python -m aigc_jax.compare_denoisers --workdir=runs/ct_denoise   # beside BM3D / NLM / TV, on real CT too

Training data: 512² phantom slices over a 400 mm field of view (0.78 mm pixels, a clinical abdomen grid),
scanned once into a cached bank (aigc_jax/data/ct_bank.py), cut into patches at doses from a tenth to half of
full dose to twice it, so one model serves the doses users have (quarter dose is the Mayo challenge's); the noise
level it estimates on its input is a second input channel, as BM3D is told σ. The target is the noiseless
reconstruction. `legacy64` is the old whole-slice recipe (64², 6.25 mm pixels, full-dose
targets) kept to reproduce earlier figures.

Bank options, off by default (docs/restoration.md measures them): --config.data.bank_texture_hu='(3.0, 30.0)'
(tissue texture), --config.data.bank_fov_range_mm='(250.0, 500.0)' (patient sizes and pixel sizes),
--config.data.bank_bone_scale='(1.0, 2.0)' (denser bone; widen --config.data.window_hi to keep it).
Real anatomy: --config.data.bank_source=FOLDER scans your own full-dose CT series (DICOM/NIfTI) into the bank,
--config.data.bank_source_share=0.5 mixes them with the phantom (1.0: them only).
Photographs: --config.data.bank_photo_share=0.5 cuts half the examples from scikit-image's sample photographs
scanned as objects (aigc_jax/data/photos.py): less real anatomy changed, more noise left (docs/restoration.md).

Choose the network with --config.model.name=conv_autoencoder (then --config.model.output=linear|sigmoid, and
--config.task.noise_conditioning=False: the noise channel is RED-CNN's).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.base_config()
  c.data = common.ct_data(size=512)
  c.data.pairs = True            # batches: 'low_dose' (input) and 'image' (target)
  c.data.patch_size = 96         # crops of the 512² slices (the networks are fully convolutional)
  c.data.dose_fractions = (0.1, 2.0)  # a tenth to twice full dose: σ ≈ 47 to 11 HU in 300 mm of water
  c.data.bank_slices = 256
  c.data.bank_held_out_slices = 8
  c.data.bank_noise_draws = 4
  c.data.labels = ()

  c.model = ml_collections.ConfigDict()
  c.model.name = 'red_cnn'       # red_cnn | conv_autoencoder
  c.model.features = 96
  c.model.kernel = 5
  c.model.depth = 5
  c.model.dtype = 'float32'

  c.task = ml_collections.ConfigDict()
  c.task.name = 'restoration'
  c.task.noise_conditioning = True  # the noise level estimated on the input is a second input channel
  # Held-out low-dose | restored | target triplets (held-out bank patches), PSNR of restored and input.
  c.evals.restoration = common.evaluator('ct_restoration', every=5_000, num=16)
  # At the last step: PSNR at single doses across the range and beyond it, and under PGD of 5 / 10 HU
  # (aigc_jax/evals/robustness.py).
  c.evals.shift = common.evaluator('restoration_robustness', every=50_000, num=32, dose_fractions=(0.1, 0.25, 1.0),
                                   linf_hu=(5.0, 10.0), steps=10)

  c.optim.learning_rate = 1e-4
  c.optim.ema_decay = 0.999
  c.num_steps = 50_000
  c.batch_size = 32

  if arg in ('runlocal', 'legacy64'):  # CPU-sized: RED-CNN with 32 features, 3×3 kernels, batch 16
    c.batch_size = 16
    c.log_every = 50
    c.model.features = 32
    c.model.kernel = 3
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 50
    c.optim.ema_decay = 0.99
    c.evals.restoration.num = 8
    c.evals.shift.num = 16
  if arg == 'runlocal':
    c.num_steps = 1_000
    c.data.patch_size = 64
    c.data.bank_slices = 24
    c.data.bank_held_out_slices = 4
    c.data.bank_noise_draws = 2
  elif arg == 'legacy64':
    c.data = common.ct_data(size=64)
    c.data.pairs = True
    c.data.num_workers = 2
    c.task.noise_conditioning = False
    c.num_steps = 600
    c.evals.shift.dose_fractions = (0.1, 0.5, 1.0)
  if arg in ('runlocal', 'legacy64'):
    c.evals.restoration.every = c.checkpoint_every = c.num_steps // 2
    c.evals.shift.every = c.num_steps
  elif arg == 'test':
    common.tiny_trainer(c)
    c.data.image_size = 64
    c.data.patch_size = 16
    c.data.bank_slices = 2
    c.data.bank_held_out_slices = 1
    c.data.bank_noise_draws = 1
    c.model.features = 8
    c.model.kernel = 3
    c.model.depth = 3
    c.evals.restoration.num = 8
    del c.evals['shift']  # minutes of attacks; tests/test_robustness.py adds and runs it
  elif arg:
    raise ValueError(f'configs/ct_denoise.py: unknown variant {arg!r}; use one of: runlocal, legacy64, test '
                     '(or none).')
  return c

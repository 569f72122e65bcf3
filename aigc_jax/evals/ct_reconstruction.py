"""`ct_reconstruction`: an autoencoder's held-out slices beside their reconstructions, with PSNR.

  config.evals.reconstruction = evaluator('ct_reconstruction', every=5_000, num=16)

Needs a task with `reconstruct(params, x)` (the VAE). The slices are the run's held-out ones
(`pipeline.monitor_hu`), read once; PSNR is in the window ([-1, 1], data range 2).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline
from aigc_jax.imaging import quality


class CTReconstruction(evaluation.Evaluator):

  fields = {'num': 16}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    config, task = self.config, self.task
    self.needs('reconstruct')
    self.data_config = config.data
    self._fn = jax.jit(lambda p, x: jnp.clip(task.reconstruct(p, x), -1.0, 1.0))

  @functools.cached_property
  def images(self) -> np.ndarray:
    d = self.data_config
    hu, source = pipeline.monitor_hu(d, self.cfg.num)
    reporting.log(f'ct_reconstruction on {len(hu)} slices of {source}')
    return pipeline.window(hu, d.window_lo, d.window_hi)[..., None].astype(np.float32)

  def run(self, params, rng, ctx):
    del rng
    x = self.images
    recon = np.asarray(ctx.gather(self._fn(params, x)))
    psnr = float(np.mean([quality.psnr(a, b, 2.0) for a, b in zip(recon[..., 0], x[..., 0])]))
    grid = reporting.image_grid(np.concatenate([x, recon], axis=2))
    return evaluation.Output(scalars={'psnr_db': psnr}, images={'input_reconstruction': grid})

"""`ct_restoration`: held-out low-dose | restored | full-dose triplets, with PSNR of restored and input.

  config.evals.restoration = evaluator('ct_restoration', every=5_000, num=16)

Needs a task with `predict(params, batch)` mapping {'low_dose'} to the restored image (restoration). The
pairs are the run's held-out ones (`pipeline.monitor_pairs`: phantom seed + 1 at the configured dose, or a
prepared dataset's held-out pairs; its first training pairs, said in the log, when it has none), read once; PSNR is in the window ([-1, 1], data range 2).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline
from aigc_jax.imaging import quality


class CTRestoration(evaluation.Evaluator):

  fields = {'num': 16}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    config, task = self.config, self.task
    self.needs('predict')
    if 'low_dose' not in pipeline.batch_spec(config.data, 1):
      raise ValueError('a "ct_restoration" evaluator needs low-/full-dose pairs: config.data.pairs=True or a '
                       'prepared dataset with a low_dose key.')
    self.data_config = config.data
    self._fn = jax.jit(lambda p, x: jnp.clip(task.predict(p, {'low_dose': x}), -1.0, 1.0))

  @functools.cached_property
  def pairs(self) -> tuple[np.ndarray, np.ndarray]:
    d = self.data_config
    low, full, source = pipeline.monitor_pairs(d, self.cfg.num)
    reporting.log(f'{self.name}: restoration pairs from {source}')
    win = lambda x: pipeline.window(x, d.window_lo, d.window_hi)[..., None].astype(np.float32)
    return win(low), win(full)

  def run(self, params, rng, ctx):
    del rng
    low, full = self.pairs
    out = np.asarray(ctx.gather(self._fn(params, low)))
    psnr = lambda x: float(np.mean([quality.psnr(a, b, 2.0) for a, b in zip(x[..., 0], full[..., 0])]))
    grid = reporting.image_grid(np.concatenate([low, out, full], axis=2))
    return evaluation.Output(scalars={'psnr_db': psnr(out), 'psnr_input_db': psnr(low)},
                             images={'low_restored_full': grid})

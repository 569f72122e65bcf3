"""`ct_samples`: a generator's sample grid, with cheap CT realism scores against held-out slices.

  config.evals.samples = evaluator('ct_samples', every=5_000, num=16[, scores=True])

Draws `num` images with the task's `sample` from the EMA parameters (a fixed key per step), logs them as the
`samples` grid, and scores them: W1 between their HU distribution and as many held-out slices', the share with
plausible anatomy, and KID in the shipped CT feature space (unbiased at any count, unlike FID). The held-out
slices are the run's own (`pipeline.monitor_hu`: phantom seed + 1, or a prepared dataset's test/validation
split; its training split, said so in the log, when it has none). `aigc_jax.evaluate` gives the full report.
"""

import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline
from aigc_jax.imaging import features
from aigc_jax.imaging import quality


class CTSamples(evaluation.Evaluator):

  fields = {'num': 16, 'scores': True}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('sample')
    self.data_config = self.config.data
    self._draw = {}

  @functools.cached_property
  def _reference(self) -> np.ndarray:
    """Held-out slices in HU, read once per run (the same at every step); within the window."""
    d = self.data_config
    hu, source = pipeline.monitor_hu(d, self.cfg.num)
    reporting.log(f'ct_samples scores against {len(hu)} slices of {source}')
    return np.clip(hu, d.window_lo, d.window_hi)

  @functools.cached_property
  def _features(self):
    return features.Features()  # the shipped net: the same space as `aigc_jax.evaluate`

  def _sampler(self, ctx):
    if ctx.batch_sharding not in self._draw:
      shape = (self.cfg.num,) + tuple(pipeline.batch_spec(self.data_config, 1)['image'].shape[1:])
      self._draw[ctx.batch_sharding] = jax.jit(lambda p, k: self.task.sample(p, k, shape),
                                               out_shardings=ctx.batch_sharding)
    return self._draw[ctx.batch_sharding]

  def sample_hu(self, params, rng, ctx) -> np.ndarray:
    """[num, H, W] samples in HU (every process takes part; each gets them all)."""
    x = np.asarray(ctx.gather(self._sampler(ctx)(params, rng)))[..., 0]
    return pipeline.unwindow(x, self.data_config.window_lo, self.data_config.window_hi)

  def run(self, params, rng, ctx):
    d = self.data_config
    hu = self.sample_hu(params, rng, ctx)
    win = lambda x: pipeline.window(x, d.window_lo, d.window_hi)
    out = evaluation.Output(images={'samples': reporting.image_grid(win(hu)[..., None])})
    if self.cfg.scores and ctx.is_chief:
      ref, window = self._reference, (d.window_lo, d.window_hi)
      # The feature net re-windows to the HU range it was trained on, whatever the run's window.
      feats = lambda x: self._features(win(x), window=window)
      out.scalars = {'hu_w1': quality.hu_wasserstein(hu, ref)['all'],
                     'anatomy_plausible': float(np.mean([quality.anatomy(x)['plausible'] for x in hu]))}
      if len(ref) >= 2:  # the unbiased KID needs two slices a side
        out.scalars['kid'] = quality.kernel_inception_distance(feats(hu), feats(ref))
    return out

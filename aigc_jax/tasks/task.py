"""The contract between a task and the one trainer.

A task owns an objective and the networks it needs; the trainer owns the loop, the mesh, the optimizer,
EMA, checkpoints and logs. Everything a task gives is a pure function of explicit arguments:

  init(rng, batch)             -> params pytree (any nesting: {'gen':…, 'disc':…} for two networks);
                                  `batch` here holds jax.ShapeDtypeStructs: shapes, not data
  loss(params, batch, rng)     -> (scalar loss, {name: scalar metric})
  grads(params, batch, rng)    -> (grads like params, {name: scalar metric})
  evaluate(params, rng, batch) -> {name: images in [-1, 1], [N, H, W, C]} written as grids
                                  (`batch` again a spec; N must divide over the data-parallel devices)
  sample_metrics(outputs)      -> {name: float}, on the host from evaluate's outputs (numpy), logged as
                                  eval/<name> at every sample step; optional (default: none)

`grads` defaults to `jax.value_and_grad(loss)`. A task whose update is not the gradient of one scalar
overrides it: a GAN returns generator and discriminator gradients in one tree (the optimizer can label the
two subtrees differently), differential privacy clips and noises per-example gradients, a two-stage model
returns zero gradients for its frozen first stage. So every family trains through the same `train_step`.
`batch` is a dict of arrays whose leading axis is the global batch, sharded over the mesh's data axes.
"""

from typing import Any

import jax
import ml_collections
import numpy as np

from aigc_jax import features
from aigc_jax import quality
from aigc_jax.data import pipeline

Params = Any
Metrics = dict[str, jax.Array]


class Task:
  """Base class with the default `grads`; subclasses implement `init`, `loss` and `evaluate`."""

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Params:
    raise NotImplementedError

  def loss(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, Metrics]:
    raise NotImplementedError

  def grads(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[Params, Metrics]:
    (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(params, batch, rng)
    return grads, {'loss': loss, **metrics}

  def evaluate(self, params: Params, rng: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    raise NotImplementedError

  def sample_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    del outputs
    return {}


class Generator(Task):
  """A task that draws images from noise: `sample(params, rng, shape, labels=None)` in [-1, 1].

  Gives the periodic sample grid and its cheap CT realism scores, and is what `aigc_jax.sample` and
  `aigc_jax.evaluate` call, so every generator family is sampled, exported and evaluated the same way.
  Subclasses set `self.data` (config.data) and `self.num_samples` and implement `sample`.
  """

  data: ml_collections.ConfigDict
  num_samples: int
  _reference: np.ndarray | None = None
  _features: Any = None

  def sample(self, params: Params, rng: jax.Array, shape: tuple[int, ...], labels: Any = None) -> jax.Array:
    raise NotImplementedError

  def evaluate(self, params, rng, batch):
    shape = (self.num_samples,) + tuple(batch['image'].shape[1:])
    return {'samples': self.sample(params, rng, shape)}

  def sample_metrics(self, outputs):
    """W1 between the HU distributions of the samples and as many held-out slices, the share with plausible
    anatomy, and KID in the shipped feature space (phantom CT only; evaluate.py does the full report)."""
    d = self.data
    if d.name != 'phantom_ct' or 'samples' not in outputs:
      return {}
    hu = pipeline.unwindow(np.asarray(outputs['samples'])[..., 0], d.window_lo, d.window_hi)
    if self._reference is None:  # drawn once per run: the same slices at every sample step
      self._reference = np.clip(pipeline.held_out_hu(d, len(hu)), d.window_lo, d.window_hi)
    if self._features is None:
      self._features = features.Features()  # the shipped net: the same space as `aigc_jax.evaluate`
    window = (d.window_lo, d.window_hi)  # the feature net re-windows to the HU range it was trained on
    win = lambda x: pipeline.window(x, *window)
    return {'hu_w1': quality.hu_wasserstein(hu, self._reference)['all'],
            'anatomy_plausible': float(np.mean([quality.anatomy(x)['plausible'] for x in hu])),
            # KID is unbiased at any sample count (FID is not), so it means something on one sample grid.
            'kid': quality.kernel_inception_distance(self._features(win(hu), window=window),
                                                     self._features(win(self._reference), window=window))}

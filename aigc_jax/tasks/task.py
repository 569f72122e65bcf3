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
import numpy as np

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

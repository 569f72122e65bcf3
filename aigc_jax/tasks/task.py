"""The contract between a task and the one trainer.

A task owns an objective and the networks it needs; the trainer owns the loop, the mesh, the optimizer,
EMA, checkpoints and logs; evaluators (`config.evals`, `aigc_jax/core/evaluation.py`) own what is measured.
Everything a task gives is a pure function of explicit arguments:

  init(rng, batch)             -> params pytree (any nesting: {'gen':…, 'disc':…} for two networks);
                                  `batch` here holds jax.ShapeDtypeStructs: shapes, not data
  loss(params, batch, rng)     -> (scalar loss, {name: scalar metric})
  grads(params, batch, rng)    -> (grads like params, {name: scalar metric})
  per_example_loss(params, batch, rng) -> [B] losses, optional: what differentially private training clips
                                  per example; `loss` is their mean where a task defines it
  predict(params, batch)       -> the model's output for a batch, optional (restoration: the restored image;
                                  a classifier: logits); what evaluators and commands call

`grads` defaults to `jax.value_and_grad(loss)`. A task whose update is not the gradient of one scalar
overrides it: a GAN returns generator and discriminator gradients in one tree (the optimizer can label the
two subtrees differently). A frozen part (latent diffusion's autoencoder) is a subtree of the params named in
`config.optim.frozen`: it gets no update and no optimizer state, and is sharded and checkpointed with the rest.
`batch` is a dict of arrays whose leading axis is the global batch, sharded over the mesh's data axes.

A generator also gives `sample(params, rng, shape, labels=None)` → images in [-1, 1], which the `ct_samples`
evaluator, `aigc_jax.sample` and `aigc_jax.evaluate` call.
"""

from typing import Any

import jax
import jax.numpy as jnp

Params = Any
Metrics = dict[str, jax.Array]


class Task:
  """Base class with the default `grads` (and `loss` from `per_example_loss` where a task gives that).

  `frozen` lists parameter paths the task never trains (added to `config.optim.frozen`). When a run starts
  from scratch the trainer passes the freshly initialized params through `pretrained` (where a task reads
  weights from elsewhere: latent diffusion's autoencoder), and every restore through `check_params`.
  """

  frozen: tuple[str, ...] = ()

  def pretrained(self, params: Params) -> Params:
    return params

  def check_params(self, params: Params) -> None:
    del params

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Params:
    raise NotImplementedError

  def per_example_loss(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array
                       ) -> tuple[jax.Array, Metrics]:
    raise NotImplementedError(f'{type(self).__name__} has no per-example loss.')

  def loss(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, Metrics]:
    losses, metrics = self.per_example_loss(params, batch, rng)
    return jnp.mean(losses), {k: jnp.mean(v) for k, v in metrics.items()}

  def grads(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[Params, Metrics]:
    (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(params, batch, rng)
    return grads, {'loss': loss, **metrics}


class Generator(Task):
  """A task that draws images from noise: `sample(params, rng, shape, labels=None)` in [-1, 1], [N, H, W, C]."""

  def sample(self, params: Params, rng: jax.Array, shape: tuple[int, ...], labels: Any = None) -> jax.Array:
    raise NotImplementedError

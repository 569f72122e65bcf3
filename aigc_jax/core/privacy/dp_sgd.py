"""DP-SGD's gradient (Abadi et al. 2016) over any task's per-example loss.

Each example's gradient is computed alone (`jax.vmap` of the task's `per_example_loss` on a batch of one),
scaled to norm ≤ C, the drawn examples' gradients are summed, Gaussian noise of std σC is added once, and the
sum is divided by the *expected* batch size (the Poisson sampling of `core/privacy/sampling.py`: dividing by the drawn
count would make the update depend on it, which the accountant does not cover). Padding rows (weight 0) add
nothing, even where their loss is not finite. Frozen subtrees get neither gradient nor noise and do not count
toward an example's norm. The examples are sharded over the mesh's data axes like any batch; `microbatches`
splits them into sequential chunks to bound the memory of per-example gradients.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from aigc_jax.core.privacy import sampling

Params = Any


def _per_example(task: Any, params: Params, trainable: Any, clip_norm: float):
  """f(example, key) → (its clipped gradient, loss, metrics, gradient norm before clipping)."""
  def one(example, key):
    single = jax.tree.map(lambda x: x[None], example)

    def loss_fn(p):
      losses, metrics = task.per_example_loss(p, single, key)
      return jnp.mean(losses), {k: jnp.mean(v) for k, v in metrics.items()}
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grads = jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads, trainable)
    norm = optax.global_norm(grads)
    scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda g: g * scale, grads), loss, metrics, norm
  return one


def private_grads(params: Params, batch: dict[str, jax.Array], rng: jax.Array, *, task: Any, clip_norm: float,
                  noise_multiplier: float, expected_batch: int, trainable: Any = None, microbatches: int = 1
                  ) -> tuple[Params, dict[str, jax.Array]]:
  """The privatized gradient of `task` at `params` on a Poisson batch and the step's metrics.

  Args:
    batch: the examples plus sampling.WEIGHT_KEY [K] (1 drawn, 0 padding).
    rng: the step's key; split into the examples' keys (each example's loss draws from its own) and the noise's.
    clip_norm: C (inf: no clipping). noise_multiplier: σ (0: no noise).
    expected_batch: q·N, the divisor of the noisy sum.
    trainable: a tree like `params` of bools (False: frozen); None: all trainable.
    microbatches: sequential chunks of the K rows (K must divide by it).
  Returns:
    (gradient like params, {'loss', the task's metrics (means over the drawn examples), 'dp_examples',
    'dp_clipped_fraction', 'dp_example_grad_norm'}).
  """
  weights = batch[sampling.WEIGHT_KEY]
  examples = {k: v for k, v in batch.items() if k != sampling.WEIGHT_KEY}
  if trainable is None:
    trainable = jax.tree.map(lambda _: True, params)
  rows = weights.shape[0]
  if rows % microbatches:
    raise ValueError(f'config.privacy.microbatches={microbatches} does not divide the {rows} padded rows.')
  loss_key, noise_key = jax.random.split(rng)
  keys = jax.random.split(loss_key, rows)
  one = jax.vmap(_per_example(task, params, trainable, clip_norm))

  def chunk_sum(example_chunk, weight_chunk, key_chunk):
    grads, loss, metrics, norm = one(example_chunk, key_chunk)
    drawn = weight_chunk > 0
    # where, not a product: a padding row's non-finite loss must not reach the sum (nan · 0 is nan).
    total = jax.tree.map(lambda g: jnp.sum(jnp.where(drawn.reshape((-1,) + (1,) * (g.ndim - 1)), g, 0.0), 0),
                         grads)
    stats = {'loss': loss, **metrics, 'dp_example_grad_norm': norm,
             'dp_clipped_fraction': (norm > clip_norm).astype(jnp.float32)}
    stats = {k: jnp.sum(jnp.where(drawn, v, 0.0)) for k, v in stats.items()}
    return total, stats

  if microbatches == 1:
    total, stats = chunk_sum(examples, weights, keys)
  else:
    # Chunk j holds rows j, j + m, j + 2m, …: every chunk spans all data-parallel devices' rows.
    split = lambda x: jnp.swapaxes(x.reshape((rows // microbatches, microbatches) + x.shape[1:]), 0, 1)

    def body(acc, xs):
      total, stats = chunk_sum(*xs)
      return jax.tree.map(jnp.add, acc, (total, stats)), None
    zeros = jax.eval_shape(chunk_sum, *jax.tree.map(lambda x: x[:rows // microbatches],
                                                    (examples, weights, keys)))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (total, stats), _ = jax.lax.scan(body, zeros, jax.tree.map(split, (examples, weights, keys)))

  std = noise_multiplier * clip_norm if noise_multiplier > 0 else 0.0
  leaves, treedef = jax.tree.flatten(total)
  noise_keys = jax.random.split(noise_key, len(leaves))
  noisy = [g + std * jax.random.normal(k, g.shape, g.dtype) if std else g
           for g, k in zip(leaves, noise_keys)]
  grads = jax.tree.unflatten(treedef, noisy)
  grads = jax.tree.map(lambda g, t: g / expected_batch if t else jnp.zeros_like(g), grads, trainable)
  drawn = jnp.sum(weights)
  metrics = {k: v / jnp.maximum(drawn, 1.0) for k, v in stats.items()}
  metrics['dp_examples'] = drawn
  return grads, metrics

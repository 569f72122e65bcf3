"""Binary cross-entropy for multi-label coding and risk prediction, written out as the papers write it:

    L(z, y) = −[ y log σ(z) + (1 − y) log(1 − σ(z)) ]

with log σ(z) and log(1 − σ(z)) = log σ(−z) computed by `jax.nn.log_sigmoid`, which stays finite for any
logit z (σ(z) itself rounds to 0 or 1 in float32 beyond |z| ≈ 17, where the naive formula gives inf).
Labels may be soft (0 ≤ y ≤ 1). A mask marks the labels that are known: a missing label adds nothing.
"""

import jax
import jax.numpy as jnp


def binary_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Elementwise −[y log σ(z) + (1 − y) log(1 − σ(z))], 0 where `mask` is 0."""
  labels = labels.astype(logits.dtype)
  loss = -(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
  return loss if mask is None else loss * mask.astype(loss.dtype)


def masked_loss_and_accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None
                              ) -> tuple[jax.Array, jax.Array]:
  """Per example: (the BCE averaged over its known labels, the share of known labels decided right at
  logit 0, i.e. probability 0.5), each [B]."""
  loss = mean_over_labels(binary_cross_entropy(logits, labels, mask), mask)
  hit = ((logits > 0) == (labels > 0.5)).astype(jnp.float32)
  return loss, mean_over_labels(hit, mask)


def mean_over_labels(loss: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Per-example mean over the last (label) axis, over the known labels only."""
  if mask is None:
    return jnp.mean(loss, axis=-1)
  mask = mask.astype(loss.dtype)
  return jnp.sum(loss * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)

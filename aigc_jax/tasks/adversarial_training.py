"""Adversarial training of an image classifier: PGD-AT (Madry et al. 2018) or TRADES (Zhang et al. 2019), as a
wrapper of the classification task's per-example loss, trained by the one trainer like any task.

  config.task.adversarial.kind = 'pgd'      # '' (off), 'pgd' or 'trades'
  config.task.adversarial.eps_hu = 5.0      # L∞ radius in Hounsfield units per pixel
  config.task.adversarial.steps = 5         # PGD steps of the inner maximization (step 2.5 eps / steps)
  config.task.adversarial.beta = 6.0        # TRADES: weight of KL(p(x) ‖ p(x')) beside the clean loss

PGD-AT trains on the worst input within the ball (the task's own loss at x' = argmax of that loss);
TRADES keeps the clean loss and adds β times the divergence between the predictions at x and at the x' that
maximizes it. Both attacks start at a random point of the ball, from the example's own key, so DP-SGD (which
calls the per-example loss example by example) composes with them.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax.objectives import attacks
from aigc_jax.tasks import task

KINDS = ('pgd', 'trades')


class AdversarialTraining(task.Task):
  """`inner` (a task with 'image' batches and `predict` → logits) trained adversarially."""

  def __init__(self, inner: Any, config: ml_collections.ConfigDict):
    adv = config.task.adversarial
    if adv.kind not in KINDS:
      raise ValueError(f'config.task.adversarial.kind={adv.kind!r}: choose one of {KINDS} (or "" for none).')
    if not callable(getattr(inner, 'predict', None)) or 'label' not in config.task:
      raise ValueError(f'config.task.adversarial: the task {config.task.name!r} is no image classifier (it needs '
                       'predict() → logits and config.task.label); adversarial training wraps one.')
    self.inner, self.kind = inner, adv.kind
    self.eps = attacks.window_units(adv.eps_hu, config.data.window_lo, config.data.window_hi)
    self.steps, self.beta = int(adv.steps), float(adv.get('beta', 6.0))
    self.frozen = getattr(inner, 'frozen', ())
    self.new_heads = getattr(inner, 'new_heads', ())

  def init(self, rng, batch):
    return self.inner.init(rng, batch)

  def pretrained(self, params):
    return self.inner.pretrained(params)

  def check_params(self, params):
    self.inner.check_params(params)

  def predict(self, params, batch):
    return self.inner.predict(params, batch)

  def per_example_loss(self, params, batch, rng):
    k_attack, k_loss = jax.random.split(rng)
    x = batch['image']
    if self.kind == 'pgd':
      worst = lambda xa: jnp.sum(self.inner.per_example_loss(params, {**batch, 'image': xa}, k_loss)[0])
      x_adv = attacks.pgd(worst, x, eps=self.eps, norm='linf', steps=self.steps, rng=k_attack)
      return self.inner.per_example_loss(params, {**batch, 'image': x_adv}, k_loss)
    clean = jax.lax.stop_gradient(self.inner.predict(params, batch))
    apart = lambda xa: jnp.sum(attacks.kl_divergence(clean, self.inner.predict(params, {**batch, 'image': xa})))
    x_adv = attacks.pgd(apart, x, eps=self.eps, norm='linf', steps=self.steps, rng=k_attack)
    losses, metrics = self.inner.per_example_loss(params, batch, k_loss)
    robust = attacks.kl_divergence(self.inner.predict(params, batch), self.inner.predict(params, {**batch, 'image': x_adv}))
    return losses + self.beta * robust, {**metrics, 'trades_kl': robust}

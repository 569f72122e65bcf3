"""`robustness`: a CT classifier's accuracy and abnormal-vs-normal AUROC under adversarial perturbation.

  config.evals.robust = evaluator('robustness', every=500, num=256, linf_hu=(2.0, 5.0, 10.0), l2_rms_hu=(5.0,),
                                  steps=10)

On the run's held-out slices (as the `classification` evaluator reads them), each slice is attacked by
FGSM and by PGD (`steps` steps, random start) within an L∞ ball of `linf_hu` Hounsfield units per pixel, and by
PGD within an L2 ball whose radius is an RMS of `l2_rms_hu` HU per pixel (radius = that × √pixels), all raising
the cross-entropy of the slice's true class (Madry et al. 2018). Sizes are in HU so that a reader sees what a
perturbation means on the scan: 5 HU is below CT's quantum noise at clinical dose. Scalars: clean_accuracy,
clean_auroc and `<attack>_<norm><size>hu_accuracy` / `_auroc` per attack; the AUROC is of the abnormal
decision (1 − p(class 0)), what a screening reader acts on.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import pipeline
from aigc_jax.evals import multilabel
from aigc_jax.objectives import attacks


class Robustness(evaluation.Evaluator):

  fields = {'num': 256, 'batch': 64, 'linf_hu': (2.0, 5.0, 10.0), 'l2_rms_hu': (5.0,), 'steps': 10}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('predict')
    t = self.config.task
    if 'label' not in t:
      raise ValueError(f'a "robustness" evaluator (config.evals.{self.name}) needs a classifier with '
                       'config.task.label (the classification task).')
    self.label = t.label
    d = self.config.data
    self.to_units = functools.partial(attacks.window_units, window_lo=d.window_lo, window_hi=d.window_hi)
    self.attacks = ([('fgsm', 'linf', float(e)) for e in self.cfg.linf_hu] +
                    [('pgd', 'linf', float(e)) for e in self.cfg.linf_hu] +
                    [('pgd', 'l2', float(e)) for e in self.cfg.l2_rms_hu])
    steps = int(self.cfg.steps)

    def attacked_logits(params, x, y, eps, key, kind, norm):
      loss = lambda xa: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
          self.task.predict(params, {'image': xa}), y))
      if kind == 'fgsm':
        xa = attacks.fgsm(loss, x, eps=eps)
      else:
        xa = attacks.pgd(loss, x, eps=eps, norm=norm, steps=steps, rng=key)
      return self.task.predict(params, {'image': xa})
    # The size is an argument: one compile per (attack, norm), whatever the sizes.
    self._attacked = jax.jit(attacked_logits, static_argnames=('kind', 'norm'))
    self._clean = jax.jit(lambda p, x: self.task.predict(p, {'image': x}))

  @functools.cached_property
  def examples(self) -> tuple[np.ndarray, np.ndarray]:
    batch, source = pipeline.monitor_examples(self.config.data, self.cfg.num)
    reporting.log(f'{self.name}: attacks {len(batch["image"])} examples of {source}')
    return batch['image'], batch[self.label].astype(np.int32)

  def _scores(self, logits: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    probs = np.asarray(jax.nn.softmax(logits, -1))
    out = {f'{prefix}_accuracy': float(np.mean(np.argmax(probs, -1) == labels))}
    abnormal = (labels != 0).astype(np.float64)
    if 0 < abnormal.sum() < len(abnormal):
      out[f'{prefix}_auroc'] = multilabel.auroc(abnormal, 1.0 - probs[:, 0])
    return out

  def run(self, params, rng, ctx):
    images, labels = self.examples
    n, size = len(images), min(int(self.cfg.batch), len(images))
    pixels = float(np.prod(images.shape[1:]))

    def over_batches(fn):
      out = []
      for i in range(0, n, size):
        x, y = images[i:i + size], labels[i:i + size]
        have = len(x)
        x = np.concatenate([x, np.repeat(x[-1:], size - have, 0)])  # one shape: one compile
        y = np.concatenate([y, np.repeat(y[-1:], size - have, 0)])
        out.append(np.asarray(ctx.gather(fn(x, y, jax.random.fold_in(rng, i))))[:have])
      return np.concatenate(out)

    scalars = self._scores(over_batches(lambda x, y, k: self._clean(params, x)), labels, 'clean')
    for kind, norm, hu in self.attacks:
      eps = self.to_units(hu) * (np.sqrt(pixels) if norm == 'l2' else 1.0)
      logits = over_batches(lambda x, y, k: self._attacked(params, x, y, jnp.float32(eps), k, kind=kind, norm=norm))
      name = f'{kind}_{"l2rms" if norm == "l2" else norm}{hu:g}hu'
      scalars.update(self._scores(logits, labels, name))
    return evaluation.Output(scalars=scalars)

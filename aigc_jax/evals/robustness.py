"""`robustness`: a CT classifier's accuracy and abnormal-vs-normal AUROC under adversarial perturbation
(and `restoration_robustness`, a denoiser's PSNR under dose shift and perturbation, below).

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
from aigc_jax.imaging import quality
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


class RestorationRobustness(evaluation.Evaluator):
  """`restoration_robustness`: a denoiser's PSNR at doses it was not trained at, and under adversarial input.

    config.evals.shift = evaluator('restoration_robustness', every=0, num=32, dose_fractions=(0.1, 0.5, 1.0),
                                   linf_hu=(5.0, 10.0), steps=10)

  Dose shift (the phantom only: its acquisition model makes pairs at any dose): held-out pairs (seed + 1) whose
  low-dose input is `dose_fractions` of full dose instead of the configured fraction; PSNR of the input and of
  the restored slice against full dose, and the gain. Perturbation (any paired data): PGD within an L∞ ball of
  `linf_hu` HU raising the restored slice's squared error to the full-dose target; PSNR of the perturbed input
  and of its restoration. Both in the window (range 2), as `ct_restoration` measures.
  """

  fields = {'num': 32, 'batch': 16, 'dose_fractions': (0.1, 0.5, 1.0), 'linf_hu': (5.0, 10.0), 'steps': 10}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('predict')
    d = self.config.data
    if self.cfg.dose_fractions and d.name != 'phantom_ct':
      raise ValueError(f'config.evals.{self.name}.dose_fractions: only the phantom makes pairs at other doses '
                       f'(the run has {d.name!r}); set dose_fractions=() to keep the perturbation test.')
    if 'low_dose' not in pipeline.batch_spec(d, 1):
      raise ValueError(f'a "restoration_robustness" evaluator (config.evals.{self.name}) needs low-/full-dose '
                       'pairs: config.data.pairs=True or a prepared dataset with a low_dose key.')
    self.to_units = functools.partial(attacks.window_units, window_lo=d.window_lo, window_hi=d.window_hi)
    restore = lambda p, x: jnp.clip(self.task.predict(p, {'low_dose': x}), -1.0, 1.0)
    steps = int(self.cfg.steps)

    def attacked(p, low, full, eps, key):
      worst = lambda x: jnp.sum(jnp.square(restore(p, x) - full))
      x = attacks.pgd(worst, low, eps=eps, norm='linf', steps=steps, rng=key)
      return x, restore(p, x)
    self._restore = jax.jit(restore)
    self._attacked = jax.jit(attacked)

  def _pairs(self, fraction: float | None) -> tuple[np.ndarray, np.ndarray]:
    d = self.config.data.copy_and_resolve_references()
    if fraction is not None:
      d.low_dose_fraction = float(fraction)
      if d.get('dose_fractions'):  # a clinical-scale bank draws from a range: pin it to this dose
        d.dose_fractions = (float(fraction), float(fraction))
    low, full = pipeline.held_out_pairs(d, int(self.cfg.num)) if fraction is not None else \
        pipeline.monitor_pairs(d, int(self.cfg.num))[:2]
    win = lambda x: pipeline.window(x, d.window_lo, d.window_hi)[..., None].astype(np.float32)
    return win(low), win(full)

  @functools.cached_property
  def pairs(self) -> dict:
    out = {None: self._pairs(None)}
    out.update({float(f): self._pairs(float(f)) for f in self.cfg.dose_fractions})
    reporting.log(f'{self.name}: {self.cfg.num} held-out pairs at the run\'s dose and at '
                  f'{tuple(self.cfg.dose_fractions)} of full dose')
    return out

  def run(self, params, rng, ctx):
    size = int(self.cfg.batch)
    psnr = lambda x, y: float(np.mean([quality.psnr(a, b, 2.0) for a, b in zip(x[..., 0], y[..., 0])]))

    def batched(fn, *arrays):
      outs = []
      for i in range(0, len(arrays[0]), size):
        part = [a[i:i + size] for a in arrays]
        have = len(part[0])
        part = [np.concatenate([a, np.repeat(a[-1:], size - have, 0)]) for a in part]
        res = fn(*part, jax.random.fold_in(rng, i))
        res = res if isinstance(res, tuple) else (res,)
        outs.append([np.asarray(ctx.gather(r))[:have] for r in res])
      return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]

    scalars = {}
    for fraction, (low, full) in self.pairs.items():
      restored, = batched(lambda x, k: self._restore(params, x), low)
      tag = 'configured_dose' if fraction is None else f'dose{fraction:g}'
      scalars[f'{tag}_psnr_input_db'], scalars[f'{tag}_psnr_db'] = psnr(low, full), psnr(restored, full)
      scalars[f'{tag}_gain_db'] = scalars[f'{tag}_psnr_db'] - scalars[f'{tag}_psnr_input_db']
    low, full = self.pairs[None]
    for hu in self.cfg.linf_hu:
      eps = jnp.float32(self.to_units(float(hu)))
      x, restored = batched(lambda lo, fu, k: self._attacked(params, lo, fu, eps, k), low, full)
      scalars[f'pgd_linf{float(hu):g}hu_psnr_input_db'] = psnr(x, full)
      scalars[f'pgd_linf{float(hu):g}hu_psnr_db'] = psnr(restored, full)
    return evaluation.Output(scalars=scalars)

"""Membership inference: how well a model's own losses tell its training examples from held-out ones.

Two attacks, both scoring an example by the task's per-example loss (the loss the run was trained on,
averaged over `repeats` keys where the loss draws noise, as diffusion's timesteps do):
  loss        Yeom et al. 2018: a low loss says "member"; the threshold is swept (an ROC, no training).
  calibrated  the loss relative to what reference models that never saw the example give it (Watson et al.
              2022's difficulty calibration; the offline, OUT-only form of LiRA, Carlini et al. 2022):
              score = mean reference loss − target loss. An example that is easy for every model stops
              looking like a member; one the target alone finds easy stands out.
Reported as papers on the attack report it: ROC AUC and the true-positive rate at 0.1 % and 1 % false
positives (the attacks that matter are the confident ones), each with a bootstrap 95 % interval over the
examples. AUC 0.5 is chance.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

FPRS = (0.001, 0.01)


def roc(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(false-positive rates, true-positive rates) of every threshold on the scores (higher: member)."""
  scores = np.concatenate([members, nonmembers])
  is_member = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
  order = np.argsort(-scores, kind='stable')
  s, y = scores[order], is_member[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # one point per distinct threshold (ties together)
  tpr = np.r_[0.0, np.cumsum(y)[last] / max(len(members), 1)]
  fpr = np.r_[0.0, np.cumsum(1 - y)[last] / max(len(nonmembers), 1)]
  return fpr, tpr


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
  """P(a member outscores a non-member) + ½ P(tie): the Mann-Whitney form of the ROC area."""
  fpr, tpr = roc(members, nonmembers)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def tpr_at(members: np.ndarray, nonmembers: np.ndarray, fpr_max: float) -> float:
  """The highest true-positive rate of a threshold whose false-positive rate is at most `fpr_max`."""
  fpr, tpr = roc(members, nonmembers)
  return float(np.max(tpr[fpr <= fpr_max]))


def attack_report(members: np.ndarray, nonmembers: np.ndarray, *, boots: int = 200, seed: int = 0
                  ) -> dict[str, float]:
  """{'auc', 'tpr@0.1%fpr', 'tpr@1%fpr'} and each one's '_lo'/'_hi' bootstrap 95 % interval (members and
  non-members resampled separately), plus the counts."""
  members, nonmembers = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
  if not len(members) or not len(nonmembers):
    raise ValueError('membership attack: it needs members and non-members to score.')

  def figures(m, n):
    return {'auc': auc(m, n), **{f'tpr@{100 * f:g}%fpr': tpr_at(m, n, f) for f in FPRS}}
  out = figures(members, nonmembers)
  rng = np.random.default_rng(seed)
  draws = [figures(rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers)))
           for _ in range(boots)]
  for k in list(out):
    lo, hi = np.percentile([d[k] for d in draws], [2.5, 97.5])
    out[f'{k}_lo'], out[f'{k}_hi'] = float(lo), float(hi)
  out['members'], out['nonmembers'] = float(len(members)), float(len(nonmembers))
  return out


@functools.lru_cache(maxsize=8)
def _loss_fn(task, at_timestep: bool):
  """The task's jitted per-example loss, one per task: members and non-members (same shapes) share a compile,
  and so do the chosen timesteps (traced, not constants)."""
  if at_timestep:
    return jax.jit(lambda p, b, k, t: task.per_example_loss(p, b, k, timestep=t)[0])
  return jax.jit(lambda p, b, k, t: task.per_example_loss(p, b, k)[0])


def per_example_losses(task, params, batch: dict[str, np.ndarray], *, key: jax.Array, repeats: int = 1,
                       chunk: int = 128, timestep: int | None = None) -> np.ndarray:
  """[N] the task's per-example loss of each row of `batch`, averaged over `repeats` keys (the same keys for
  every example and every model, so target and reference losses are comparable), in fixed-size chunks.
  `timestep`: a diffusion model's loss at that step (its noise still drawn from the keys) instead of at
  random steps."""
  n = len(next(iter(batch.values())))
  size = min(chunk, n)
  fn = _loss_fn(task, timestep is not None)
  t = jnp.int32(0 if timestep is None else timestep)
  out = np.zeros(n)
  for r in range(repeats):
    k = jax.random.fold_in(key, r)
    for i in range(0, n, size):
      part = {name: v[i:i + size] for name, v in batch.items()}
      have = len(next(iter(part.values())))
      if have < size:  # pad the last chunk so the loss compiles once
        part = {name: np.concatenate([v, np.repeat(v[-1:], size - have, 0)]) for name, v in part.items()}
      out[i:i + have] += np.asarray(fn(params, part, k, t))[:have]
  return out / repeats

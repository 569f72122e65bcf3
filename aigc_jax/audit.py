r"""Membership-inference audit of a trained run: can its own losses tell the examples it trained on from
examples it never saw?

  python -m aigc_jax.audit --workdir=runs/ct_classify [--num=512] [--repeats=4] [--references=4] [--seed=0]
  python -m aigc_jax.audit --workdir=runs/coding       # text, tabular: the loss attack
  python -m aigc_jax.audit --workdir=runs/ct_local --timesteps=25,100,400   # diffusion: also at chosen steps

Members: `num` examples drawn at random (with --seed) from those the run was actually served — the first
step × batch_size of its shuffled stream, or, for a differentially private run, every example its Poisson
draws included (`pipeline.trained_indices`: the plan in privacy.json, the seed in privacy_secret).
Non-members: for CT, the first `num` held-out slices of the run's data (phantom seed + 1, or a prepared
dataset's test/validation split); for the row sources (text, labelled text, text pairs, image reports,
tabular cohorts), `num` rows drawn at random from the test split, which the splits keep apart by document
group or patient (for a language model, rows are packed token rows: a row is the unit). Each example is scored by the
task's per-example training loss with the run's newest EMA parameters, averaged over `repeats` keys (the loss
of a diffusion or noisy-input model draws noise). Attacks (`aigc_jax/evals/membership.py`): 'loss' always;
'calibrated' with --references=K: K reference runs of the same config on disjoint phantom slices (data seed +
1000 + k; a prepared dataset or a row source has no such fresh data, and is refused) are trained by the same
trainer in `<out>/reference_<k>` (reused when finished), and an example's score is its mean reference loss
minus the target's loss. With --timesteps (diffusion and flow models), each attack is also run on the
denoising loss at each chosen step alone (`loss@t=25`, ...): a training image is told apart best at small
and middle noise levels (Carlini et al. 2023; Matsumoto et al. 2023), where the loss averaged over all steps
dilutes it with the near-pure-noise steps, which any model denoises alike.

Writes `<out>/audit_<step>.json` (default out: `<workdir>/audit`): AUC and TPR at 0.1 % / 1 % FPR with
bootstrap 95 % intervals per attack, the counts, and the run's ε from privacy.json where it was private. Only
aggregate figures are written: no example, index, text or identifier.
"""

import json
import os

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402
from aigc_jax.data import serving  # noqa: E402
from aigc_jax.evals import membership  # noqa: E402

FLAGS = flags.FLAGS
REFERENCE_SEED_OFFSET = 1000  # reference runs' phantom seeds: apart from the run's (seed) and held-out (seed + 1)


def define_flags():
  flags.DEFINE_string('workdir', None, 'A training workdir (config.json and checkpoints/).')
  flags.DEFINE_integer('num', 512, 'Members and non-members to score, each.')
  flags.DEFINE_integer('repeats', 4, 'Keys to average each per-example loss over.')
  flags.DEFINE_integer('references', 0, 'Reference runs for the calibrated attack (0: the loss attack only).')
  flags.DEFINE_integer('seed', 0, 'Member choice, loss keys and bootstrap seed.')
  flags.DEFINE_string('out', '', 'Output folder (default <workdir>/audit).')
  flags.DEFINE_list('timesteps', [], 'A diffusion / flow model: also attack its denoising loss at these steps '
                    '(0…T−1; a flow model\'s time is step / (T − 1)), each a separate attack.')


def _ct_sets(workdir, config, step, num, rng):
  """(members, non-members, their descriptions) of a CT run."""
  name = config.data.name
  if name != 'phantom_ct' and not name.startswith('tfds:'):
    raise ValueError(f'--workdir={workdir}: the run trained on {name!r}, which the audit cannot read as CT slices '
                     'or as rows (phantom_ct, a prepared tfds: dataset, or a source with train/test rows).')
  trained = np.unique(pipeline.trained_indices(workdir, config, step))
  chosen = np.sort(rng.choice(trained, min(num, len(trained)), replace=False))
  members = pipeline.examples_at(config.data, pipeline.make_source(config.data), chosen)
  held_out, held_name = pipeline.held_out_source(config.data, num=num)
  count = min(num, len(held_out))
  return (members, pipeline.examples_at(config.data, held_out, range(count)),
          f'{len(chosen)} of the {len(trained)} training slices served', f'{count} of {held_name}')


def _row_sets(workdir, config, step, data, num, rng):
  """(members, non-members, their descriptions) of a run on a row source (text, tabular)."""
  train = data.rows(config.data.split)
  trained = np.unique(pipeline.trained_indices(workdir, config, step, len(serving.Rows(train))))
  chosen = np.sort(rng.choice(trained, min(num, len(trained)), replace=False))
  test = data.rows('test')
  size = len(serving.Rows(test))
  # Drawn at random too: a split's rows keep its source's order (a cohort sorted by outcome, corpora one after
  # another), so its first rows are no sample of it (taking them gave a 0.78 AUC on flchain by label mix alone).
  picked = np.sort(rng.choice(size, min(num, size), replace=False))
  what = f'{config.data.name} rows'
  return ({k: v[chosen] for k, v in train.items()}, {k: v[picked] for k, v in test.items()},
          f'{len(chosen)} of the {len(trained)} training {what} served', f'{len(picked)} of the {size} test {what}')


def _reference_run(config, out_dir, k):
  """(task, params) of reference run k (trained here unless it finished before)."""
  ref = config.copy_and_resolve_references()
  ref.data.seed = int(config.data.seed) + REFERENCE_SEED_OFFSET + k
  ref.seed = int(config.seed) + 1 + k
  ref.evals = ml_collections.ConfigDict()
  ref.init_from = ''
  ref_dir = os.path.join(out_dir, f'reference_{k}')
  os.makedirs(ref_dir, exist_ok=True)
  if not os.path.exists(os.path.join(ref_dir, 'config.json')) or \
      experiment.load_run(ref_dir)[3] < int(config.num_steps):
    reporting.log(f'audit: training reference run {k} (data seed {ref.data.seed}) in {ref_dir}')
    experiment.train_and_evaluate(ref, ref_dir)
  _, task, params, _ = experiment.load_run(ref_dir)
  return task, params


def _check_timesteps(timesteps, task, config) -> None:
  if not timesteps:
    return
  total = getattr(getattr(task, 'schedule', None), 'timesteps', 0)
  if not total:
    raise ValueError(f'--timesteps={",".join(map(str, timesteps))}: the run\'s task ({config.task.name!r}) has no '
                     'timesteps to choose; leave --timesteps empty (its loss as trained).')
  bad = [t for t in timesteps if not 0 <= t < total]
  if bad:
    raise ValueError(f'--timesteps: {bad} outside the model\'s steps 0…{total - 1}.')


def audit(workdir: str, *, num: int = 512, repeats: int = 4, references: int = 0, seed: int = 0,
          out_dir: str = '', timesteps: tuple[int, ...] = ()) -> dict:
  """The audit of the module docstring; returns what it writes."""
  config, task, params, step, data = experiment.load_run(workdir, with_data=True)
  if references and config.data.name != 'phantom_ct':
    raise ValueError(f'--references={references}: reference runs need fresh examples from the run\'s own '
                     f'distribution, which only the phantom makes (the run has {config.data.name!r}); use '
                     '--references=0 (the loss attack).')
  _check_timesteps(timesteps, task, config)
  rng = np.random.default_rng(seed)
  if isinstance(data, serving.RowsSource):
    members, nonmembers, member_what, nonmember_what = _row_sets(workdir, config, step, data, num, rng)
  else:
    members, nonmembers, member_what, nonmember_what = _ct_sets(workdir, config, step, num, rng)
  key = jax.random.PRNGKey(seed)
  # One scoring per timestep chosen (None: the loss as trained, at random timesteps for a diffusion model).
  scorings = {'': None, **{f'@t={t}': int(t) for t in timesteps}}

  def losses(task, params):
    return {name: [membership.per_example_losses(task, params, b, key=key, repeats=repeats, timestep=t)
                   for b in (members, nonmembers)] for name, t in scorings.items()}
  target = losses(task, params)
  report = {'workdir_step': step, 'members': member_what, 'nonmembers': nonmember_what, 'repeats': repeats,
            'mean_loss': {'members': float(target[''][0].mean()), 'nonmembers': float(target[''][1].mean())},
            'attacks': {f'loss{name}': membership.attack_report(-m, -n, seed=seed)
                        for name, (m, n) in target.items()}}
  if timesteps:
    report['mean_loss_at'] = {name[1:]: {'members': float(m.mean()), 'nonmembers': float(n.mean())}
                              for name, (m, n) in target.items() if name}
  out_dir = out_dir or os.path.join(workdir, 'audit')
  os.makedirs(out_dir, exist_ok=True)
  if references:
    refs = [losses(*_reference_run(config, out_dir, k)) for k in range(references)]
    for name, (m, n) in target.items():
      mean_ref = [np.mean([r[name][i] for r in refs], axis=0) for i in range(2)]
      report['attacks'][f'calibrated{name}'] = membership.attack_report(mean_ref[0] - m, mean_ref[1] - n,
                                                                        seed=seed)
    report['references'] = references
  privacy = os.path.join(workdir, 'privacy.json')
  if os.path.exists(privacy):
    with open(privacy) as f:
      plan = json.load(f)
    report['privacy'] = {k: plan[k] for k in ('epsilon', 'delta', 'delta_total', 'noise_multiplier', 'clip_norm',
                                              'rate', 'steps', 'kind')}
  with open(os.path.join(out_dir, f'audit_{step}.json'), 'w') as f:
    json.dump(report, f, indent=1)
  return report


def summary(report: dict) -> str:
  lines = [f'members: {report["members"]}; non-members: {report["nonmembers"]}']
  for name, r in report['attacks'].items():
    lines.append(f'{name:>16}: AUC {r["auc"]:.3f} [{r["auc_lo"]:.3f}, {r["auc_hi"]:.3f}]  '
                 f'TPR@0.1%FPR {r["tpr@0.1%fpr"]:.3f} [{r["tpr@0.1%fpr_lo"]:.3f}, {r["tpr@0.1%fpr_hi"]:.3f}]  '
                 f'TPR@1%FPR {r["tpr@1%fpr"]:.3f} [{r["tpr@1%fpr_lo"]:.3f}, {r["tpr@1%fpr_hi"]:.3f}]')
  if 'privacy' in report:
    p = report['privacy']
    lines.append(f'the run is private: ε={p["epsilon"]:.3g} at δ={p["delta"]:g} ({p["kind"]})')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  try:
    timesteps = tuple(int(t) for t in FLAGS.timesteps)
  except ValueError:
    raise app.UsageError(f'--timesteps={",".join(FLAGS.timesteps)}: give whole steps, e.g. --timesteps=50,100,300'
                         ) from None
  try:
    report = audit(FLAGS.workdir, num=FLAGS.num, repeats=FLAGS.repeats, references=FLAGS.references,
                   seed=FLAGS.seed, out_dir=FLAGS.out, timesteps=timesteps)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  print(summary(report))


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))

r"""Explains a trained CT classifier's decisions (configs/ct_classify.py): which pixels raise the score of the
class it answers.

  python -m aigc_jax.explain --workdir=runs/ct_classify [--input=SCANS] [--num=8] \
      [--methods=integrated_gradients,smoothgrad,occlusion] [--target=-1] [--out=DIR]

Slices: with --input, a folder of DICOM series / NIfTI volumes (CT, HU), read as `aigc_jax.prepare` reads
them, up to --max_slices evenly spaced slices per series, fitted to the model's size and window; without it,
the first --num held-out slices of the run's own data. Each slice is explained for the class the model answers
(or --target) by the methods of `aigc_jax/evals/attribution.py`, from the newest EMA parameters.

Writes under --out (default `<workdir>/explain`): `<method>/<slice>.png` (the slice in its window beside the
attribution over it; red raises the class's score, blue lowers it), the same as TensorBoard images, and
`explain.json`: per method the mean deletion and insertion areas (beside those of a random ordering of the
pixels: a map must beat it) and the model-randomization check, the Spearman correlation between the map of the
trained model and that of a re-initialized one (near 1: the map does not depend on what the model learned).
Slices are named by their place (series_<n>_slice_<k>, held_out_<i>), never by anything from their headers.
"""

import json
import os

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402
from aigc_jax.evals import attribution  # noqa: E402
from aigc_jax.imaging import geometry  # noqa: E402
from aigc_jax.imaging import scans  # noqa: E402

FLAGS = flags.FLAGS
METHODS = ('integrated_gradients', 'smoothgrad', 'occlusion')
BASELINE_HU = 0.0  # water: see aigc_jax/evals/attribution.py


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained classifier run (configs/ct_classify.py).')
  flags.DEFINE_string('input', '', 'Folder of DICOM series / NIfTI volumes (empty: the run\'s held-out slices).')
  flags.DEFINE_integer('num', 8, 'Held-out slices to explain (without --input).')
  flags.DEFINE_integer('max_slices', 4, 'Slices per input series, evenly spaced.')
  flags.DEFINE_list('methods', list(METHODS), f'Any of {", ".join(METHODS)}.')
  flags.DEFINE_integer('target', -1, 'Class to explain (-1: the one the model answers).')
  flags.DEFINE_integer('seed', 0, 'SmoothGrad noise and the randomized model\'s key.')
  flags.DEFINE_string('out', '', 'Output folder (default <workdir>/explain).')


def input_slices(config, input_dir: str, max_slices: int) -> tuple[np.ndarray, list[str]]:
  """([N, H, W, 1] windowed slices at the model's size, their names) from the scans under `input_dir`."""
  d = config.data
  found = scans.spaced_slices(input_dir, max_slices)
  images = [pipeline.window(geometry.fit_square(hu, d.image_size, fill=d.window_lo)[0], d.window_lo,
                            d.window_hi)[..., None] for _, hu, _ in found]
  return np.stack(images), [name for name, _, _ in found]


def explain(workdir: str, *, input_dir: str = '', num: int = 8, max_slices: int = 4, methods=METHODS,
            target: int = -1, seed: int = 0, out_dir: str = '') -> dict:
  """The explanations of the module docstring; returns the report it writes as explain.json."""
  config, task, params, step, data = experiment.load_run(workdir, with_data=True)
  if 'label' not in config.task or not callable(getattr(task, 'predict', None)) or 'window_lo' not in config.data:
    raise ValueError(f'--workdir={workdir}: config.task.name={config.task.name!r} is no CT classifier; explain '
                     'reads runs of configs/ct_classify.py (or another classification run on CT).')
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f'--methods: {unknown} unknown; choose from {", ".join(METHODS)}.')
  if input_dir:
    images, names = input_slices(config, input_dir, max_slices)
  else:
    batch, source = pipeline.monitor_examples(config.data, num)
    kind = 'training' if 'training split' in source else 'held_out'  # the monitor's fallback says so
    images, names = batch['image'], [f'{kind}_{i}' for i in range(len(batch['image']))]
  x = jnp.asarray(images)
  num_classes = int(config.task.num_classes)
  if not -1 <= target < num_classes:
    raise ValueError(f'--target={target}: the model has classes 0…{num_classes - 1} (or -1: its answer).')
  logits = np.asarray(task.predict(params, {'image': x}))
  cls = np.full(len(x), target) if target >= 0 else np.argmax(logits, -1)
  pick = lambda out: jnp.take_along_axis(out, jnp.asarray(cls)[:, None], 1)[:, 0]
  baseline = jnp.full_like(x, float(pipeline.window(np.array(BASELINE_HU), config.data.window_lo,
                                                    config.data.window_hi)))
  spec = data.batch_spec(1)
  random_params = task.init(jax.random.PRNGKey(seed + 1), {k: jnp.zeros(v.shape, v.dtype) for k, v in spec.items()})
  key = jax.random.PRNGKey(seed)

  def attribute(method, p):
    score = lambda xx: pick(task.predict(p, {'image': xx}))
    if method == 'integrated_gradients':
      return np.asarray(attribution.integrated_gradients(score, x, baseline))
    if method == 'smoothgrad':
      return np.asarray(attribution.smoothgrad(score, x, key))
    return np.asarray(attribution.occlusion(score, x, baseline, patch=_patch(x.shape[1])))

  prob = jax.jit(lambda xx: pick(jax.nn.softmax(task.predict(params, {'image': xx}), -1)))
  out_dir = out_dir or os.path.join(workdir, 'explain')
  os.makedirs(out_dir, exist_ok=True)
  writer = reporting.Writer(out_dir)
  report = {'step': step, 'slices': len(x), 'baseline_hu': BASELINE_HU,
            'predicted': {n: {'class': int(c), 'probability': float(jax.nn.softmax(lg)[c])}
                          for n, c, lg in zip(names, cls, logits)}, 'methods': {}}
  rnd = np.random.default_rng(seed).normal(size=images.shape)
  d_rand, i_rand = attribution.deletion_insertion(prob, images, rnd, np.asarray(baseline))
  report['random_order'] = {'deletion_auc': float(d_rand.mean()), 'insertion_auc': float(i_rand.mean())}
  try:
    for method in methods:
      attr = attribute(method, params)
      dele, ins = attribution.deletion_insertion(prob, images, attr, np.asarray(baseline))
      rho = attribution.rank_correlation(attr, attribute(method, random_params))
      report['methods'][method] = {'deletion_auc': float(dele.mean()), 'insertion_auc': float(ins.mean()),
                                   'randomized_model_spearman': float(np.nanmean(rho))}
      os.makedirs(os.path.join(out_dir, method), exist_ok=True)
      for name, img, a in zip(names, images, attr):
        picture = attribution.overlay(img, a)
        reporting.save_png(os.path.join(out_dir, method, f'{name}.png'), picture)
        writer.image(step, f'{method}/{name}', picture)
  finally:
    writer.close()
  with open(os.path.join(out_dir, 'explain.json'), 'w') as f:
    json.dump(report, f, indent=1)
  return report


def _patch(size: int) -> int:
  """The occlusion tile: about an eighth of the slice, a divisor of its size."""
  return max(d for d in range(1, max(size // 8, 1) + 1) if size % d == 0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  try:
    report = explain(FLAGS.workdir, input_dir=FLAGS.input, num=FLAGS.num, max_slices=FLAGS.max_slices,
                     methods=tuple(FLAGS.methods), target=FLAGS.target, seed=FLAGS.seed, out_dir=FLAGS.out)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  r = report['random_order']
  print(f'{report["slices"]} slices; random order: deletion {r["deletion_auc"]:.3f}, insertion {r["insertion_auc"]:.3f}')
  for method, m in report['methods'].items():
    print(f'{method:>22}: deletion {m["deletion_auc"]:.3f}  insertion {m["insertion_auc"]:.3f}  '
          f'randomized-model Spearman {m["randomized_model_spearman"]:.3f}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))

r"""Explains a trained classifier's decisions: which pixels of a CT slice (configs/ct_classify.py), or which
tokens of a document (a text classifier: configs/text_coding.py), raise the score of the class it answers.

  python -m aigc_jax.explain --workdir=runs/ct_classify [--input=SCANS] [--num=8] \
      [--methods=integrated_gradients,smoothgrad,occlusion] [--target=-1] [--out=DIR]
  python -m aigc_jax.explain --workdir=runs/coding [--input=REPORTS.txt] [--num=8] \
      [--methods=integrated_gradients,occlusion,attention] [--target=-1] [--out=DIR]

CT slices: with --input, a folder of DICOM series / NIfTI volumes (CT, HU), read as `aigc_jax.prepare` reads
them, up to --max_slices evenly spaced slices per series, fitted to the model's size and window; without it,
the first --num held-out slices of the run's own data. Each slice is explained for the class the model answers
(or --target) by the methods of `aigc_jax/evals/attribution.py`, from the newest EMA parameters. Writes under
--out (default `<workdir>/explain`): `<method>/<slice>.png` (the slice in its window beside the attribution
over it; red raises the class's score, blue lowers it) and the same as TensorBoard images.

Documents: with --input, a UTF-8 text file, one document per non-blank line; without it, the first --num
documents of the run's test split. Every document first goes through the text de-identification scrubber
(aigc_jax/text/deid.py: what it cannot find, it cannot remove), so the explanation is of the scrubbed text and
no identifier it finds reaches the output. Each is explained for the label the model gives the highest
probability (or --target, a label's index) by the methods of `aigc_jax/evals/tokens.py`. Writes `<method>.html`
(the documents with each token shaded by its attribution), `<method>.jsonl` (per document: its tokens' text and
attributions) and `attention/<document>.png` (each block's attention over the real tokens).

Both write `explain.json`: per method the mean deletion and insertion areas (beside those of a random ordering:
a map must beat it) and the model-randomization check, the Spearman correlation between the map of the trained
model and that of a re-initialized one (near 1: the map does not depend on what the model learned). Slices and
documents are named by their place (series_<n>_slice_<k>, held_out_<i>, line_<n>, test_<i>), never by anything
from their headers or text.
"""

import json
import os
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402
from aigc_jax.evals import attribution  # noqa: E402
from aigc_jax.evals import tokens as token_attribution  # noqa: E402
from aigc_jax.imaging import geometry  # noqa: E402
from aigc_jax.imaging import scans  # noqa: E402
from aigc_jax.models import transformer  # noqa: E402
from aigc_jax.text import deid  # noqa: E402

FLAGS = flags.FLAGS
METHODS = ('integrated_gradients', 'smoothgrad', 'occlusion')
TEXT_METHODS = ('integrated_gradients', 'occlusion', 'attention')
BASELINE_HU = 0.0  # water: see aigc_jax/evals/attribution.py


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained classifier run (configs/ct_classify.py, configs/text_coding.py).')
  flags.DEFINE_string('input', '', 'CT: a folder of DICOM series / NIfTI volumes; text: a UTF-8 file, one document '
                      'per line (empty: the run\'s held-out slices / test documents).')
  flags.DEFINE_integer('num', 8, 'Held-out slices or test documents to explain (without --input).')
  flags.DEFINE_integer('max_slices', 4, 'Slices per input series, evenly spaced.')
  flags.DEFINE_list('methods', [], f'CT: any of {", ".join(METHODS)}; text: any of {", ".join(TEXT_METHODS)} '
                    '(empty: all).')
  flags.DEFINE_integer('target', -1, 'Class (CT) or label index (text) to explain (-1: the one the model answers).')
  flags.DEFINE_integer('seed', 0, 'SmoothGrad noise and the randomized model\'s key.')
  flags.DEFINE_string('out', '', 'Output folder (default <workdir>/explain).')


def input_slices(config, input_dir: str, max_slices: int) -> tuple[np.ndarray, list[str]]:
  """([N, H, W, 1] windowed slices at the model's size, their names) from the scans under `input_dir`."""
  d = config.data
  found = scans.spaced_slices(input_dir, max_slices)
  images = [pipeline.window(geometry.fit_square(hu, d.image_size, fill=d.window_lo)[0], d.window_lo,
                            d.window_hi)[..., None] for _, hu, _ in found]
  return np.stack(images), [name for name, _, _ in found]


def explain(workdir: str, *, input_dir: str = '', num: int = 8, max_slices: int = 4, methods=(),
            target: int = -1, seed: int = 0, out_dir: str = '') -> dict:
  """The explanations of the module docstring; returns the report it writes as explain.json."""
  config, task, params, step, data = experiment.load_run(workdir, with_data=True)
  text = config.task.name == 'text_classification'
  if not text and ('label' not in config.task or not callable(getattr(task, 'predict', None))
                   or 'window_lo' not in config.data):
    raise ValueError(f'--workdir={workdir}: config.task.name={config.task.name!r} is neither a CT classifier nor a '
                     'text classifier; explain reads runs of configs/ct_classify.py and configs/text_coding.py.')
  known = TEXT_METHODS if text else METHODS
  methods = tuple(methods) or known
  unknown = sorted(set(methods) - set(known))
  if unknown:
    raise ValueError(f'--methods: {unknown} unknown for this run; choose from {", ".join(known)}.')
  out_dir = out_dir or os.path.join(workdir, 'explain')
  os.makedirs(out_dir, exist_ok=True)
  if text:
    report = _explain_text(task, params, step, data, input_path=input_dir, num=num, methods=methods,
                           target=target, seed=seed, out_dir=out_dir)
  else:
    report = _explain_slices(config, task, params, step, data, input_dir=input_dir, num=num,
                             max_slices=max_slices, methods=methods, target=target, seed=seed, out_dir=out_dir)
  with open(os.path.join(out_dir, 'explain.json'), 'w') as f:
    json.dump(report, f, indent=1)
  return report


def _explain_slices(config, task, params, step, data, *, input_dir, num, max_slices, methods, target, seed,
                    out_dir) -> dict:
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
  return report


def text_documents(path: str) -> tuple[list[str], list[str]]:
  """(names line_<n>, texts) of the non-blank lines of a UTF-8 file, one document per line."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'--input={path}: cannot read it as UTF-8 text ({e}); give a text file, one document per '
                     'line.') from None
  found = [(f'line_{i + 1}', line.strip()) for i, line in enumerate(lines) if line.strip()]
  if not found:
    raise ValueError(f'--input={path}: no document in it (every line is blank); give one document per line.')
  return [name for name, _ in found], [text for _, text in found]


def _explain_text(task, params, step, data, *, input_path, num, methods, target, seed, out_dir) -> dict:
  if input_path:
    names, texts = text_documents(input_path)
  else:
    test = data.splits['test'][:num]
    names, texts = [f'test_{i}' for i in range(len(test))], [text for text, _ in test]
  scrubber = deid.Scrubber()
  texts = [scrubber.scrub(t) for t in texts]   # before anything is computed or written from them
  length = data.config.seq_len
  encoded = data.tokenizer.encode_with_offsets(texts)
  n = len(texts)
  tok, keep, offsets = np.zeros((n, length), np.int32), np.zeros((n, length), bool), []
  for i, (ids, spans) in enumerate(encoded):
    ids = ids[:length]
    tok[i, :len(ids)], keep[i, :len(ids)] = ids, True
    offsets.append(spans[:len(ids)])
  tokens_j = jnp.asarray(tok)
  positions_j = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (n, length))
  keep_j = jnp.asarray(keep)
  batch = lambda k: {'tokens': tokens_j, 'positions': positions_j, 'segment_ids': k.astype(jnp.int32)}
  probs = np.asarray(jax.jit(task.probabilities)(params, batch(keep_j)))
  if not -1 <= target < probs.shape[1]:
    raise ValueError(f'--target={target}: the model has labels 0…{probs.shape[1] - 1} (or -1: its most probable).')
  cls = np.full(n, target) if target >= 0 else probs.argmax(1)
  pick = lambda out: jnp.take_along_axis(out, jnp.asarray(cls)[:, None], 1)[:, 0]
  model = task.model

  def ig(p):
    score = lambda e: pick(model.apply({'params': p}, tokens_j, positions_j, batch(keep_j)['segment_ids'],
                                       embeddings=e))
    return token_attribution.integrated_gradients(score, p['embed']['embedding'][tokens_j]) * keep_j

  def attention(p):
    weights = transformer.self_attention_weights(model, p, tokens_j, positions_j, batch(keep_j)['segment_ids'])
    return token_attribution.rollout(weights, keep_j), weights

  # Parameters are an argument: the trained and the randomized model share one compiled program per method.
  programs = {'integrated_gradients': jax.jit(ig), 'attention': jax.jit(attention), 'occlusion': jax.jit(
      lambda p: token_attribution.leave_one_out(lambda k: pick(task.predict(p, batch(k))), keep_j))}
  attribute = lambda method, p: jax.tree.map(np.asarray, programs[method](p))

  spec = data.batch_spec(1)
  random_params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(seed + 1),
                                                   {k: jnp.zeros(v.shape, v.dtype) for k, v in spec.items()}))
  prob = jax.jit(lambda k: pick(task.probabilities(params, batch(k))))
  label = lambda i: data.label_names[int(cls[i])]
  report = {'step': step, 'documents': n, 'deidentified': dict(scrubber.counts),
            'truncated': [name for name, (ids, _) in zip(names, encoded) if len(ids) > length],
            'predicted': {name: {'label': label(i), 'index': int(cls[i]), 'probability': float(probs[i, cls[i]])}
                          for i, name in enumerate(names)}, 'methods': {}}
  rnd = np.random.default_rng(seed).normal(size=keep.shape)
  d_rand, i_rand = token_attribution.deletion_insertion(prob, keep, rnd)
  report['random_order'] = {'deletion_auc': float(d_rand.mean()), 'insertion_auc': float(i_rand.mean())}
  for method in methods:
    attr, weights = attribute(method, params), None
    if method == 'attention':
      attr, weights = attr
    dele, ins = token_attribution.deletion_insertion(prob, keep, attr)
    other = attribute(method, random_params)
    rho = token_attribution.rank_correlation(attr, other[0] if method == 'attention' else other, keep)
    report['methods'][method] = {'deletion_auc': float(dele.mean()), 'insertion_auc': float(ins.mean()),
                                 'randomized_model_spearman': float(np.nanmean(rho))}
    shown, lines = [], []
    for i, name in enumerate(names):
      shown.append({'heading': f'{name}: {label(i)} (p = {probs[i, cls[i]]:.2f})',
                    'pieces': token_attribution.pieces(texts[i], offsets[i], attr[i, :len(offsets[i])])})
      lines.append(json.dumps({'name': name, 'label': label(i), 'tokens': [texts[i][a:b] for a, b in offsets[i]],
                               'attribution': [round(float(v), 6) for v in attr[i, :len(offsets[i])]]}))
    with open(os.path.join(out_dir, f'{method}.html'), 'w', encoding='utf-8') as f:
      f.write(token_attribution.to_html(f'{method}, step {step}', shown))
    with open(os.path.join(out_dir, f'{method}.jsonl'), 'w', encoding='utf-8') as f:
      f.write(''.join(line + '\n' for line in lines))
    if weights is not None:
      os.makedirs(os.path.join(out_dir, 'attention'), exist_ok=True)
      for i, name in enumerate(names):
        reporting.save_png(os.path.join(out_dir, 'attention', f'{name}.png'),
                           token_attribution.attention_picture(weights[:, i], keep[i]))
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
  what = f'{report["slices"]} slices' if 'slices' in report else f'{report["documents"]} documents'
  for name in report.get('truncated', []):
    print(f'explain: {name} is longer than the model reads: explained from its start only.', file=sys.stderr)
  print(f'{what}; random order: deletion {r["deletion_auc"]:.3f}, insertion {r["insertion_auc"]:.3f}')
  for method, m in report['methods'].items():
    print(f'{method:>22}: deletion {m["deletion_auc"]:.3f}  insertion {m["insertion_auc"]:.3f}  '
          f'randomized-model Spearman {m["randomized_model_spearman"]:.3f}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))

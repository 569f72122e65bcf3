"""Image → report: the slice reports (composed from the labels, read back from text), the image reporter (its
cached encoder in decoding, a causal LM loading into it), the 'phantom_reports' rows, a test-size run scored by
the `image_report` evaluator, the baselines, and the `report` command on a DICOM series and a PNG."""

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import scan_files
from aigc_jax import baseline
from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax import report
from aigc_jax.data import image_reports
from aigc_jax.data import phantom
from aigc_jax.models import transformer
from aigc_jax.models import vision_text
from aigc_jax.text import slice_reports
from aigc_jax.text import tokenizer
from configs import report_image


def test_every_composed_report_reads_back_as_its_slice_labels():
  book = slice_reports.phrasebook()
  assert all(len(book[t][0]) >= 5 for t in ('lungs', 'heart', 'pleura', 'nodule'))
  for template in book['nodule'][0]:    # mined, not written: each has the three slots and nothing hedged
    assert '{side}' in template.lower() and '{zone}' in template.lower() and '{size_' in template
  kinds = set()
  for i in range(300):
    _, labels = phantom.phantom_slice(3, i, 32, lesion_prob=0.7)
    truth = slice_reports.truth(labels)
    text = slice_reports.compose(labels, np.random.default_rng(i))
    said = slice_reports.read(text)
    assert (said['level'], said['kind'], said['side']) == (truth['level'], truth['kind'], truth['side']), text
    assert abs(said['size_mm'] - truth['size_mm']) <= 0.5 + 1e-6, text   # "12 mm" / "1.2 cm": rounding only
    assert 'xxxx' not in text.lower()
    kinds.add(truth['kind'])
  assert kinds == {'none', 'nodule', 'mass'}


@pytest.mark.parametrize('text, expected', [
    ('Axial CT slice at the level of the upper abdomen. No pneumothorax, nodules or masses.',
     ('upper abdomen', 'none', '', 0.0)),
    ('There is a 2.5 cm hypodense mass in the liver. No nodule.', ('', 'mass', '', 25.0)),
    ('No liver mass. The lungs are clear.', ('', 'none', '', 0.0)),
    ('8 mm right lower lobe lung nodule, no effusion.', ('', 'nodule', 'right', 8.0)),
])
def test_reading_a_report_respects_negation(text, expected):
  said = slice_reports.read(text)
  assert (said['level'], said['kind'], said['side'], said['size_mm']) == expected


def test_clinical_scores_count_what_is_said_against_the_labels():
  truths = [{'level': 'upper chest', 'kind': 'nodule', 'side': 'left', 'size_mm': 12.0},
            {'level': 'lower chest', 'kind': 'none', 'side': '', 'size_mm': 0.0},
            {'level': 'upper abdomen', 'kind': 'mass', 'side': '', 'size_mm': 30.0}]
  reports = ['Axial CT slice at the level of the upper chest. 15 mm right upper lung nodule.',
             'Axial CT slice at the level of the upper chest. There is a 9 mm nodular opacity in the left upper lobe.',
             'Axial CT slice at the level of the upper abdomen. There is a 2.0 cm hypodense mass in the liver.']
  s = slice_reports.clinical_scores(truths, reports)
  assert s['level_accuracy'] == pytest.approx(2 / 3)
  assert (s['nodule_precision'], s['nodule_recall']) == (0.5, 1.0) and s['nodule_f1'] == pytest.approx(2 / 3)
  assert (s['mass_precision'], s['mass_recall'], s['mass_f1']) == (1.0, 1.0, 1.0)
  assert s['side_accuracy'] == 0.0                         # the nodule was put on the wrong side
  assert s['size_error_mm'] == pytest.approx((3 + 10) / 2) and s['size_stated_share'] == 1.0
  assert 'side_accuracy' not in slice_reports.clinical_scores(truths[1:2], ['Lungs are clear.'])


# Programs these tests compile to run once or a few times on tiny inputs: LLVM's optimizations would cost most
# of their time and change nothing checked.
_jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


def _reporter():
  kw = dict(vocab_size=64, max_len=16, width=32, depth=2, heads=4, vision_depth=1, vision_channels=(8, 16))
  m = vision_text.ImageReporter(**kw)
  image = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 2))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 6, 64)
  params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), tokens, image=image)['params'])
  opened = {k: ({**v, 'gate': jnp.asarray(0.7)} if k.startswith('cross_') else v) for k, v in params.items()}
  return m, params, opened, image, tokens


def test_decoding_with_the_cached_image_equals_the_uncached_forward():
  m, _, params, image, tokens = _reporter()
  forward = _jit(lambda p, t, img: m.apply({'params': p}, t, image=img))   # jitted: eager flax is slower
  full = forward(params, tokens, image)
  assert full.shape == (2, 10, 64)
  other = forward(params, tokens, image.at[1].set(0.0))
  np.testing.assert_allclose(other[0], full[0], atol=1e-6)     # each row reads its own image, and only it
  assert not np.allclose(other[1], full[1], atol=1e-3)
  logits, cache = _jit(lambda p, t, img: m.apply({'params': p}, t, cache=m.init_cache(2, 10), index=0, image=img))(
      params, tokens[:, :3], image)
  assert cache['cross_k'].shape == (2, 2, 16, 4, 8)            # 16² → 4 × 4 tokens, per block
  step = _jit(lambda p, t, c, i: m.apply({'params': p}, t, cache=c, index=i))
  steps = [logits]
  for i in range(3, 10):   # later steps get no image: its keys and values are in the cache
    logits, cache = step(params, tokens[:, i:i + 1], cache, i)
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=3e-5)
  with pytest.raises(ValueError, match='needs a memory'):
    m.apply({'params': params}, tokens)


def test_a_causal_lm_loads_into_the_reporter_and_is_unchanged_at_the_start():
  m, fresh, _, image, tokens = _reporter()
  lm = transformer.Transformer(vocab_size=64, max_len=16, width=32, depth=2, heads=4)
  lm_params = nn.meta.unbox(lm.init(jax.random.PRNGKey(3), tokens)['params'])
  assert set(fresh) - set(lm_params) == set(m.fresh_params()) and 'vision' in m.fresh_params()
  merged = {**fresh, **lm_params}
  np.testing.assert_allclose(m.apply({'params': merged}, tokens, image=image), lm.apply({'params': lm_params}, tokens),
                             atol=1e-5)


def test_closed_gates_starve_the_image_of_gradient_and_open_ones_do_not():
  # Why configs/report_image.py opens the gates when training from scratch (models/transformer.py).
  grads = {}
  for gate in (0.0, 1.0):
    m = vision_text.ImageReporter(vocab_size=64, max_len=16, width=32, depth=2, heads=4, vision_depth=1,
                                  vision_channels=(8, 16), gate_init=gate)
    image = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 2))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 6, 64)
    params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), tokens, image=image)['params'])
    assert float(params['cross_0']['gate']) == gate
    loss = lambda p: jnp.mean(jax.nn.log_softmax(m.apply({'params': p}, tokens, image=image))[..., 7])
    grads[gate] = _jit(jax.grad(loss))(params)
  size = lambda tree: jax.tree.leaves(jax.tree.map(lambda g: float(jnp.abs(g).max()), tree))
  closed, opened = grads[0.0], grads[1.0]
  assert max(size(closed['vision'])) == 0.0 and min(size(opened['vision'])) > 0.0
  for layer in ('key', 'value', 'out'):
    assert max(size(closed['cross_0'][layer])) == 0.0 and min(size(opened['cross_0'][layer])) > 0.0
  assert abs(float(closed['cross_0']['gate'])) > 0.0     # only the gate moves, by a gradient of noise


def test_rows_pair_each_slice_with_its_report_and_learn_the_report_only():
  c = report_image.get_config('test')
  data = registry.build_data(c)
  rows = data.rows('train')
  n, size = c.data.num_train, c.data.image_size
  assert rows['image'].shape == (n, size, size, 2) and rows['tokens'].shape == (n, c.data.seq_len)
  assert rows['image'].min() >= -1 and rows['image'].max() <= 1
  hu, _, reports = data.slices('train')
  np.testing.assert_allclose(rows['image'][..., 1], np.clip((hu - -160) / 400, 0, 1) * 2 - 1, atol=1e-5)
  cue = data.tokenizer.encode([image_reports.CUE])[0]
  body = (data.tokenizer.encode([' ' + reports[0]])[0] + [tokenizer.EOS])[:c.data.target_len]
  assert rows['tokens'][0, :len(cue) + len(body)].tolist() == cue + body
  assert np.flatnonzero(rows['loss_mask'][0]).tolist() == list(range(len(cue) - 1, len(cue) + len(body) - 1))
  assert data.reports('test') != data.reports('train')[:c.data.num_test]     # other slices
  again = image_reports.PhantomReports(c.data)
  assert again.reports('train') == reports                                   # a function of the config
  spec = data.batch_spec(4)
  assert spec['image'].shape == (4, size, size, 2)
  c.data.windows = ((100.0, -100.0),)
  with pytest.raises(ValueError, match='low < high'):
    registry.build_data(c)


def test_a_test_size_run_reports_on_held_out_slices_and_the_command_on_scans(tmp_path):
  c = report_image.get_config('test')
  work = str(tmp_path / 'run')
  experiment.train_and_evaluate(c, work)
  metrics = [json.loads(line) for line in open(os.path.join(work, 'metrics.jsonl'))]
  test = [m for m in metrics if 'test/bleu_4' in m][-1]
  assert {'test/level_accuracy', 'test/nodule_f1', 'test/mass_f1', 'test/rouge_l'} <= set(test)
  texts = open(os.path.join(work, 'test', f'generated_{c.num_steps:07d}.txt')).read()
  assert texts.count('reference: Axial CT slice') == c.data.num_test

  scans_dir = str(tmp_path / 'scans')
  scan_files.ct_series(os.path.join(scans_dir, 'a'), 3, tags={'PatientName': 'Doe^Jane', 'PatientID': 'MRN-99812'})
  rows = report.report(work, scans_dir, max_slices=2, beam=2)
  assert [r['slice'] for r in rows] == ['series_0_slice_0', 'series_0_slice_2']
  assert all(r['pixel_size_mm'] == 400 / c.data.image_size and isinstance(r['report'], str) for r in rows)
  assert 'Doe' not in json.dumps(rows) and 'MRN' not in json.dumps(rows)
  png = str(tmp_path / 'slice.png')
  Image.fromarray(np.linspace(0, 255, 40 * 40).reshape(40, 40).astype(np.uint8)).save(png)
  (only,) = report.report(work, png, beam=1)
  assert only['slice'] == 'png_0' and only['fitted']
  with pytest.raises(ValueError, match='neither a folder nor a .png'):
    report.report(work, str(tmp_path / 'missing.dcm'))


def test_baselines_bracket_the_task():
  c = report_image.get_config('test')
  c.data.num_train, c.data.num_test = 200, 60
  c.data.target_len, c.data.seq_len = 64, 68
  out = baseline.image_report(c)
  ceiling, frequent, nearest = out['true_labels_other_wording'], out['most_frequent'], out['nearest_image']
  assert ceiling['level_accuracy'] == 1.0 and ceiling['lesion_f1_macro'] == 1.0 and ceiling['side_accuracy'] == 1.0
  assert frequent['nodule_f1'] == 0.0 and frequent['mass_f1'] == 0.0    # a normal report names no lesion
  assert ceiling['bleu_4'] > frequent['bleu_4'] and 0 < nearest['bleu_1'] < 1

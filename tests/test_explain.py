"""Explanations: the attribution methods against what they promise on closed-form scores, the sanity checks
(a map that ignores the model is caught; deletion ranks a faithful map above a random one), and the explain
command on a tiny CT classifier with a DICOM series, and on a tiny text classifier with a text file, whose
planted identifiers must not reach its output."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import experiment
from aigc_jax import explain
from aigc_jax.evals import attribution
from aigc_jax.evals import tokens
from aigc_jax.models import transformer
from configs import ct_classify
from configs import text_coding
import scan_files


def _linear():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(1, 8, 8, 1)), jnp.float32)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 8, 8, 1)), jnp.float32)
  return w, x, jnp.zeros_like(x)


def test_attributions_keep_their_promises_on_closed_form_scores():
  w, x, base = _linear()
  score = lambda xx: jnp.sum(jnp.tanh(xx) * w, axis=(1, 2, 3))
  ig = attribution.integrated_gradients(score, x, base, steps=64)
  # Completeness: the attributions add up to score(x) − score(baseline) (trapezoid error ~1e-4 here).
  np.testing.assert_allclose(ig.sum((1, 2, 3)), score(x) - score(base), rtol=1e-3)
  lin = lambda xx: jnp.sum(xx * w, axis=(1, 2, 3))
  np.testing.assert_allclose(attribution.integrated_gradients(lin, x, base, steps=4), x * w, atol=1e-6)
  np.testing.assert_allclose(attribution.smoothgrad(lin, x, jax.random.PRNGKey(0)), jnp.broadcast_to(w, x.shape),
                             atol=1e-6)
  occ = attribution.occlusion(lin, x, base, patch=4)
  # Each 4×4 tile carries the score's drop when that tile goes to the baseline: Σ_tile w·x.
  tile = (x * w)[:, :4, 4:8].sum((1, 2, 3))
  np.testing.assert_allclose(occ[:, 1, 5, 0], tile, rtol=1e-5)
  with pytest.raises(ValueError, match='patch 3'):
    attribution.occlusion(lin, x, base, patch=3)


def test_a_faithful_map_beats_a_random_order_and_changes_with_the_weights():
  w, x, base = _linear()
  prob = lambda xx: jax.nn.sigmoid(jnp.sum(xx * w, axis=(1, 2, 3)))
  faithful = np.asarray(x * w)
  rnd = np.random.default_rng(1).normal(size=x.shape)
  d_f, i_f = attribution.deletion_insertion(prob, np.asarray(x), faithful, np.asarray(base))
  d_r, i_r = attribution.deletion_insertion(prob, np.asarray(x), rnd, np.asarray(base))
  assert np.all(d_f < d_r) and np.all(i_f > i_r)
  other = np.asarray(x * jnp.asarray(np.random.default_rng(2).normal(size=w.shape), jnp.float32))
  assert np.all(attribution.rank_correlation(faithful, other) < 0.8)
  pic = attribution.overlay(np.asarray(x[0]), faithful[0])
  assert pic.shape == (8, 16, 3) and pic.dtype == np.uint8


def test_explain_command_on_a_dicom_series_writes_maps_and_checks_without_identifiers(tmp_path):
  c = ct_classify.get_config('test')
  c.evals = type(c.evals)()
  # One conv level: the attributions compile the network's gradient into each method's scan, twice (the trained
  # and the randomized model); nothing checked here depends on the network's depth.
  c.model.channels = (8,)
  work = str(tmp_path / 'run')
  experiment.train_and_evaluate(c, work)
  scans_dir = str(tmp_path / 'scans')
  scan_files.ct_series(os.path.join(scans_dir, 'a'), 3, tags={'PatientName': 'Doe^Jane', 'PatientID': 'MRN-99812'})
  out = str(tmp_path / 'explain')
  report = explain.explain(work, input_dir=scans_dir, max_slices=2, methods=('integrated_gradients', 'occlusion'),
                           out_dir=out)
  assert report['slices'] == 2 and set(report['methods']) == {'integrated_gradients', 'occlusion'}
  for m in report['methods'].values():
    assert 0 <= m['deletion_auc'] <= 1 and 0 <= m['insertion_auc'] <= 1 and -1 <= m['randomized_model_spearman'] <= 1
  assert sorted(os.listdir(os.path.join(out, 'occlusion'))) == ['series_0_slice_0.png', 'series_0_slice_2.png']
  for folder, _, files in os.walk(out):
    for f in files:
      blob = open(os.path.join(folder, f), 'rb').read()
      assert b'Doe' not in blob and b'MRN-99812' not in blob, f
  held = explain.explain(work, num=3, methods=('smoothgrad',), out_dir=str(tmp_path / 'held'))
  assert list(held['predicted']) == ['held_out_0', 'held_out_1', 'held_out_2']
  assert json.loads((tmp_path / 'held' / 'explain.json').read_text())['slices'] == 3
  with pytest.raises(ValueError, match="'saliency'"):
    explain.explain(work, methods=('saliency',), out_dir=out)
  with pytest.raises(FileNotFoundError, match='not a folder'):
    explain.explain(work, input_dir=str(tmp_path / 'missing'), out_dir=out)


def test_token_attributions_keep_their_promises_on_additive_scores():
  rng = np.random.default_rng(3)
  emb = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  keep = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  # A score linear in the embeddings: integrated gradients from zero give each real token exactly e_t · w.
  lin = lambda e: jnp.sum((e @ w) * keep, 1)
  np.testing.assert_allclose(tokens.integrated_gradients(lin, emb, steps=4), (emb @ w) * keep, atol=1e-5)
  sq = lambda e: jnp.sum(jnp.tanh(e @ w) * keep, 1) ** 2   # completeness, not additive
  np.testing.assert_allclose(tokens.integrated_gradients(sq, emb, steps=64).sum(1), sq(emb) - sq(0 * emb), rtol=2e-3)
  # Leave one out of an additive score is each token's own term, 0 at padding.
  c = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
  add = lambda k: jnp.sum(c * k, 1)
  np.testing.assert_allclose(tokens.leave_one_out(add, keep), c * keep, atol=1e-6)
  # Deletion / insertion: a ranking by the true terms beats a random one under a monotone probability.
  prob = lambda k: jax.nn.sigmoid(add(k))
  d_f, i_f = tokens.deletion_insertion(prob, np.asarray(keep), np.asarray(c))
  d_r, i_r = tokens.deletion_insertion(prob, np.asarray(keep), -np.asarray(c))
  assert np.all(d_f < d_r) and np.all(i_f > i_r)
  # Rollout: one block where every real query looks at token 0 — half of each row flows there through the
  # attention, half stays by the residual; two blocks compound it (by hand: M = ½E₀ + ½I, mean of M² rows).
  n = 3
  att = np.zeros((1, 1, 1, 5, 5))
  att[..., 0] = 1.0
  one = np.asarray(tokens.rollout(jnp.asarray(att), keep[:1]))[0]
  np.testing.assert_allclose(one, [0.5 + 0.5 / n, 0.5 / n, 0.5 / n, 0, 0], atol=1e-6)
  m = 0.5 * np.eye(5)
  m[:, 0] += 0.5
  two = np.asarray(tokens.rollout(jnp.asarray(np.concatenate([att, att])), keep[:1]))[0]
  np.testing.assert_allclose(two[:n], (m @ m)[:n, :n].mean(0), atol=1e-6)
  # Randomization check over real tokens only; pieces keep the text whole, shared byte spans shown once.
  assert tokens.rank_correlation(np.asarray(c), np.asarray(c) * 2, np.asarray(keep)) == pytest.approx([1, 1])
  text = 'no focal consolidation.'
  got = tokens.pieces(text, [(0, 2), (2, 8), (9, 22), (22, 23), (22, 23)], [1, 2, 3, 4, 5])
  assert ''.join(p for p, _ in got) == text and got[2] == (' ', None) and got[-1] == ('.', 4.0)


def test_classifier_takes_embeddings_and_shows_its_attention():
  model = transformer.TextClassifier(vocab_size=50, max_len=8, width=16, depth=2, heads=2, num_labels=3)
  tok = jnp.asarray([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]], jnp.int32)
  seg = (tok > 0).astype(jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(6), tok.shape)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tok, pos, seg)['params'])
  apply = jax.jit(lambda e: model.apply({'params': params}, tok, pos, seg, embeddings=e))   # one compile
  emb = params['embed']['embedding'][tok]
  plain = model.apply({'params': params}, tok, pos, seg)
  np.testing.assert_allclose(apply(emb), plain, atol=1e-6)
  assert not np.allclose(apply(emb * 0), plain, atol=1e-3)
  w = np.asarray(jax.jit(transformer.self_attention_weights, static_argnums=0)(model, params, tok, pos, seg))
  assert w.shape == (2, 2, 2, 6, 6)
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  assert np.all(w[:, 0, :, :4, 4:] == 0)                 # nobody looks at padding
  assert np.all(np.triu(w[..., :4, :4], 1) == 0)        # causal: nobody looks ahead
  # Block 0's weights by hand from the parameters: LayerNorm of the embeddings, then the query/key projections.
  p0 = params['block_0']
  x = params['embed']['embedding'][tok] + params['pos_embed']['embedding'][pos]
  h = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-6)
  h = h * p0['ln_attn']['scale'] + p0['ln_attn']['bias']
  q, k = (jnp.einsum('btw,whd->bthd', h, p0[n]['kernel']) + p0[n]['bias'] for n in ('query', 'key'))
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(8.0)
  logits = jnp.where(transformer.attention_mask(seg, True), logits, -jnp.inf)
  real = np.asarray(seg, bool)
  both = np.broadcast_to(real[:, None, :, None] & real[:, None, None, :], w[0].shape)
  np.testing.assert_allclose(w[0][both], np.asarray(jax.nn.softmax(logits, -1))[both], atol=1e-5)


def test_explain_command_on_a_text_file_writes_token_maps_without_identifiers(tmp_path):
  c = text_coding.get_config('test')
  c.evals = type(c.evals)()
  work = str(tmp_path / 'run')
  experiment.train_and_evaluate(c, work)
  reports = tmp_path / 'reports.txt'
  reports.write_text('Patient: Jane Doe, MRN 99812345, seen 03/12/2024. Heart size is normal. No effusion.\n\n'
                     'Stable cardiomegaly with small bilateral pleural effusions.\n', encoding='utf-8')
  out = tmp_path / 'explain'
  report = explain.explain(work, input_dir=str(reports), out_dir=str(out))
  assert report['documents'] == 2 and list(report['predicted']) == ['line_1', 'line_3']
  assert set(report['methods']) == {'integrated_gradients', 'occlusion', 'attention'}
  assert report['deidentified'] == {'NAME': 1, 'ID': 1, 'DATE': 1}
  for m in report['methods'].values():
    assert 0 <= m['deletion_auc'] <= 1 and 0 <= m['insertion_auc'] <= 1 and -1 <= m['randomized_model_spearman'] <= 1
  rows = [json.loads(line) for line in (out / 'occlusion.jsonl').read_text().splitlines()]
  assert [r['name'] for r in rows] == ['line_1', 'line_3'] and len(rows[1]['tokens']) == len(rows[1]['attribution'])
  assert ''.join(rows[1]['tokens']) == 'Stable cardiomegaly with small bilateral pleural effusions.'
  assert sorted(os.listdir(out / 'attention')) == ['line_1.png', 'line_3.png']
  for folder, _, files in os.walk(out):
    for f in files:
      blob = open(os.path.join(folder, f), 'rb').read()
      assert b'Doe' not in blob and b'99812345' not in blob and b'03/12/2024' not in blob, f
  held = explain.explain(work, num=2, methods=('occlusion',), out_dir=str(tmp_path / 'held'))
  assert list(held['predicted']) == ['test_0', 'test_1'] and set(held['truncated']) <= {'test_0', 'test_1'}
  assert (tmp_path / 'held' / 'occlusion.html').read_text().count('<h3>') == 2
  with pytest.raises(ValueError, match="'smoothgrad'"):
    explain.explain(work, methods=('smoothgrad',), out_dir=str(out))
  blank = tmp_path / 'blank.txt'
  blank.write_text('\n  \n', encoding='utf-8')
  with pytest.raises(ValueError, match='no document'):
    explain.explain(work, input_dir=str(blank), out_dir=str(out))

"""Explanations: the attribution methods against what they promise on closed-form scores, the sanity checks
(a map that ignores the model is caught; deletion ranks a faithful map above a random one), and the explain
command on a tiny classifier run with a DICOM series whose identifiers must not reach its output."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import experiment
from aigc_jax import explain
from aigc_jax.evals import attribution
from configs import ct_classify
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

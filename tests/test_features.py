"""The offline feature network behind FID/KID/precision/recall: trained by the one trainer as a classification
run, exported, loaded by hash, reported; and the classification evaluator's scores."""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import stats

from aigc_jax.evals import classification as classification_eval
from aigc_jax.imaging import features
from aigc_jax.tasks import classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_feature_network_loads_and_is_named_by_its_hash():
  net = features.Features()
  blob = open(features.DEFAULT_PATH, 'rb').read()
  assert net.sha256 == hashlib.sha256(blob).hexdigest() and net.sha256[:16] in net.name
  x = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32)).astype(np.float32)
  f = net(x)
  assert f.shape == (5, 128) and np.all(np.isfinite(f))
  np.testing.assert_allclose(net(x[:2]), f[:2], rtol=1e-5, atol=1e-6)  # per image: batching changes nothing
  real, level, _ = features.labelled_slices(96, features.TRAIN_SEED + 2)
  # Trained on the anatomy: in its features, held-out chest slices (level < 0.35) and abdomen slices
  # (level > 0.65) fall on the side of their own class's centroid.
  fr = net(real)
  chest, abdomen = level < 0.35, level > 0.65
  centroids = np.stack([fr[chest].mean(0), fr[abdomen].mean(0)])
  keep = chest | abdomen
  pred = np.argmin(((fr[keep][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert np.mean(pred == abdomen[keep]) > 0.9


def test_train_features_trains_through_the_trainer_and_exports_a_loadable_network(tmp_path):
  """The command end to end on the test recipe: a classification run with its evaluator's scores, confusion
  matrix image and text, then an export that `Features` loads by hash; bad files are named."""
  work, out = tmp_path / 'run', str(tmp_path / 'f.msgpack')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-m', 'aigc_jax.train_features', f'--config={ROOT}/configs/ct_features.py:test',
                         f'--workdir={work}', f'--out={out}'], cwd=ROOT, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert record['step'] == 4 and record['model']['channels'] == [8, 8, 8] and 'held out' in record['held_out']
  assert 0.0 <= record['held_out_kind_accuracy'] <= 1.0 and np.isfinite(record['held_out_level_mae'])
  net = features.Features(out)  # the recorded architecture, not the default one
  assert net.sha256 == record['sha256'] and net(np.zeros((2, 16, 16), np.float32)).shape == (2, 8)
  rows = [json.loads(line) for line in open(work / 'metrics.jsonl')]
  final = [r for r in rows if 'kind/balanced_accuracy' in r][-1]
  assert final['step'] == 4 and 0.0 <= final['kind/accuracy'] <= 1.0 and final['kind/log_loss'] > 0
  assert {'train/cross_entropy', 'train/level_mse', 'train/histogram_ce'} <= set().union(*rows)
  assert (work / 'kind' / 'confusion_0000004.png').exists()
  table = (work / 'kind' / 'confusion_0000004.txt').read_text()
  counts = np.array([[int(v) for v in line.split()[-3:]] for line in table.splitlines()[1:]])
  assert 'liver mass' in table and counts.shape == (3, 3) and counts.sum() == 16  # every held-out example
  assert np.trace(counts) / 16 == pytest.approx(final['kind/accuracy'])
  (tmp_path / 'bad.msgpack').write_bytes(b'not a network')
  with pytest.raises(ValueError, match='bad.msgpack'):
    features.Features(str(tmp_path / 'bad.msgpack'))
  with pytest.raises(FileNotFoundError, match='python -m aigc_jax.train_features'):
    features.Features(str(tmp_path / 'missing.msgpack'))


def test_classification_scores_see_through_a_majority_answer():
  labels = np.array([0] * 8 + [1] * 2 + [2] * 2)
  always_none = classification_eval.confusion_matrix(labels, np.zeros_like(labels), 3)
  s = classification_eval.scores(always_none)
  assert s['accuracy'] == pytest.approx(8 / 12) and s['balanced_accuracy'] == pytest.approx(1 / 3)
  assert s['recall_0'] == 1.0 and s['recall_2'] == 0.0
  perfect = classification_eval.scores(classification_eval.confusion_matrix(labels, labels, 3))
  assert perfect['accuracy'] == perfect['balanced_accuracy'] == 1.0
  img = classification_eval.confusion_image(always_none)
  assert img.shape == (72, 72, 3) and img.dtype == np.uint8 and img[12, 12, 0] < img[12, 36, 0]


def test_training_noise_draws_its_strength_and_its_pixels_from_separate_keys():
  strength, unit = [], []
  for i in range(200):
    s, n = classification.training_noise(jax.random.PRNGKey(i), (2, 8, 8))
    assert s.shape == (2, 1, 1) and n.shape == (2, 8, 8)
    strength.append(np.asarray(s)[0, 0, 0])
    unit.append(np.asarray(n)[0, 0, 0])
  # One key for both made the first pixel's noise a monotone function of the first image's strength.
  assert abs(stats.spearmanr(strength, unit).statistic) < 0.3
  assert 0.0 <= min(strength) and max(strength) <= 1.0 and abs(np.mean(unit)) < 0.3 and 0.7 < np.std(unit) < 1.3

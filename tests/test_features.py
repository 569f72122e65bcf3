"""The offline feature network behind FID/KID/precision/recall: trained here, loaded by hash, reported."""

import hashlib

import jax
import numpy as np
import pytest
from scipy import stats

from aigc_jax import features


def test_shipped_feature_network_loads_and_is_named_by_its_hash():
  net = features.Features()
  blob = open(features.DEFAULT_PATH, 'rb').read()
  assert net.sha256 == hashlib.sha256(blob).hexdigest() and net.sha256[:16] in net.name
  x = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32)).astype(np.float32)
  f = net(x)
  assert f.shape == (5, 128) and np.all(np.isfinite(f))
  np.testing.assert_allclose(net(x[:2]), f[:2], rtol=1e-5, atol=1e-6)  # per image: batching changes nothing
  real, level, _ = features.training_set(96, features.TRAIN_SEED + 2)
  # Trained on the anatomy: in its features, held-out chest slices (level < 0.35) and abdomen slices
  # (level > 0.65) fall on the side of their own class's centroid.
  fr = net(real)
  chest, abdomen = level < 0.35, level > 0.65
  centroids = np.stack([fr[chest].mean(0), fr[abdomen].mean(0)])
  keep = chest | abdomen
  pred = np.argmin(((fr[keep][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert np.mean(pred == abdomen[keep]) > 0.9


def test_train_writes_a_loadable_network_and_a_bad_file_is_named(tmp_path):
  out = str(tmp_path / 'f.msgpack')
  info = features.train(out, steps=3, num=16, num_val=8, batch=8)
  net = features.Features(out)
  assert net.sha256 == info['sha256'] and net(np.zeros((2, 16, 16), np.float32)).shape == (2, 128)
  (tmp_path / 'bad.msgpack').write_bytes(b'not a network')
  with pytest.raises(ValueError, match='bad.msgpack'):
    features.Features(str(tmp_path / 'bad.msgpack'))
  with pytest.raises(FileNotFoundError, match='python -m aigc_jax.train_features'):
    features.Features(str(tmp_path / 'missing.msgpack'))


def test_training_noise_draws_its_strength_and_its_pixels_from_separate_keys():
  strength, unit = [], []
  for i in range(200):
    s, n = features.training_noise(jax.random.PRNGKey(i), (2, 8, 8))
    assert s.shape == (2, 1, 1) and n.shape == (2, 8, 8)
    strength.append(np.asarray(s)[0, 0, 0])
    unit.append(np.asarray(n)[0, 0, 0])
  # One key for both made the first pixel's noise a monotone function of the first image's strength.
  assert abs(stats.spearmanr(strength, unit).statistic) < 0.3
  assert 0.0 <= min(strength) and max(strength) <= 1.0 and abs(np.mean(unit)) < 0.3 and 0.7 < np.std(unit) < 1.3

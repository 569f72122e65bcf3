"""InceptionV3 from a local weights file reproduces pytorch-fid's FID network (fixture made by
tests/inception_parity.py with torch), and bad weight files are named."""

import numpy as np
import pytest

from aigc_jax.imaging import inception
import inception_parity


def test_inception_features_match_pytorch_fid(tmp_path):
  sd = inception_parity.random_state_dict()
  path = str(tmp_path / 'inception_random.npz')
  np.savez(path, **sd)
  net = inception.InceptionFeatures(path)
  assert net.name.startswith('InceptionV3 (FID) inception_random.npz sha256:')
  x = inception_parity.inputs()
  ours = net(2.0 * x - 1.0)  # windowed slices are in [-1, 1]; pytorch-fid took the same images in [0, 1]
  ref = np.load(inception_parity.FIXTURE)['features']
  assert ours.shape == ref.shape == (2, 2048)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)  # measured: 1.7e-6 at most, features ~0.38
  assert not np.allclose(ours[0], ours[1], rtol=0.1)  # the two inputs are told apart


def test_bad_inception_weights_are_named(tmp_path):
  sd = inception_parity.random_state_dict()
  del sd['Mixed_6b.branch7x7_2.bn.running_var']
  with pytest.raises(ValueError, match='Mixed_6b.branch7x7_2.bn.running_var'):
    inception.params_from_state_dict(sd)
  sd = inception_parity.random_state_dict()
  sd['Conv2d_1a_3x3.conv.weight'] = sd['Conv2d_1a_3x3.conv.weight'][:, :1]
  with pytest.raises(ValueError, match='Conv2d_1a_3x3.conv.weight has shape'):
    inception.params_from_state_dict(sd)
  with pytest.raises(FileNotFoundError, match='Nothing is downloaded'):
    inception.InceptionFeatures(str(tmp_path / 'missing.npz'))
  if not _has_torch():
    open(tmp_path / 'w.pth', 'wb').write(b'PK')
    with pytest.raises(ValueError, match='torch is not installed'):
      inception.InceptionFeatures(str(tmp_path / 'w.pth'))


def _has_torch():
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False

r"""The feature space of FID, KID, precision/recall and the feature-space memorization audit, offline.

No InceptionV3 download: by default a small CNN (`models/feature_net.py`) trained on the built-in phantom to
tell the slice level, the lesion kind and the HU histogram of a slice (anatomy and tissue composition), shipped
as `aigc_jax/imaging/assets/ct_features.msgpack` and identified by the SHA-256 of that file. Every report names
the file and its hash, so two FIDs are comparable exactly when the hashes match. It is a classification run of
the one trainer (`configs/ct_features.py`); train and export another (a new file means a new hash and new
numbers) with:

  python -m aigc_jax.train_features --workdir=runs/ct_features --out=FILE.msgpack

The shipped file predates that recipe: it was trained by this module's former loop (same data, net, losses
and schedule; its own batch order and noise draws), so the command gives a different file and hash (its
figures: docs/evaluation.md).

Inputs are slices windowed to [-1, 1] at any size; they are resized to 32×32 first. The net was trained on
slices windowed to WINDOW_HU (−1000…1000 HU); slices in another window are re-windowed to it first
(`Features(...)(images, window=(lo, hi))`), so a run's HU window does not change its features. Features: the
128 global-average-pooled channels of the last convolution.
"""

import hashlib
import json
import os

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from aigc_jax.models import feature_net

DEFAULT_PATH = os.path.join(os.path.dirname(__file__), 'assets', 'ct_features.msgpack')
SIZE = 32            # inputs are resized to SIZE × SIZE: coarse anatomy, cheap enough for a 2-core CPU
TRAIN_SEED = 7_000   # phantom seed of the feature net's training slices (configs/ct_features.py)
WINDOW_HU = (-1000.0, 1000.0)  # the HU window of the training slices: what [-1, 1] means to the net


class Features:
  """A saved feature network as a function of windowed slices; `.name` is what reports print."""

  def __init__(self, path: str = ''):
    path = path or DEFAULT_PATH
    if not os.path.exists(path):
      raise FileNotFoundError(f'Feature network {path!r} not found; train one with python -m aigc_jax.train_features '
                              f'--out={path}.')
    blob = open(path, 'rb').read()
    self.sha256 = hashlib.sha256(blob).hexdigest()
    self.path = path
    net = feature_net.FeatureNet(**_model_fields(path))
    target = nn.meta.unbox(jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE))))['params']
    try:
      self.params = flax.serialization.from_bytes(target, blob)
    except Exception as e:
      raise ValueError(f'{path!r} is not a feature network of this version ({type(e).__name__}); retrain it '
                       'with python -m aigc_jax.train_features.') from None
    self._apply = jax.jit(lambda p, x: net.apply({'params': p}, x)['features'])

  @property
  def name(self) -> str:
    return f'aigc_jax CT feature net {os.path.basename(self.path)} sha256:{self.sha256[:16]}'

  def __call__(self, images: np.ndarray, batch: int = 64,
               window: tuple[float, float] = WINDOW_HU) -> np.ndarray:
    """Features [N, 128] of slices [N, H, W] windowed to [-1, 1] from `window` (lo, hi) in HU."""
    lo, hi = (float(w) for w in window)
    if (lo, hi) != WINDOW_HU:
      # Back to HU (within the run's window) and into the window the net learned; HU outside the run's
      # window is lost either way, but what the slice shows means the same to the net.
      images = pipeline.window(pipeline.unwindow(images, lo, hi), *WINDOW_HU)
    return evaluation.in_batches(lambda x: self._apply(self.params, x), images, batch)


def _model_fields(path: str) -> dict:
  """The architecture fields recorded beside a network (`export`); none (the defaults) for older files."""
  try:
    with open(path + '.json') as f:
      fields = json.load(f).get('model') or {}
  except (OSError, ValueError):
    return {}
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()
          if k in ('channels', 'size', 'num_classes', 'bins')}


def labelled_slices(num: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(windowed slices [num, SIZE, SIZE], level [num], lesion kind [num]) of the phantom at `seed`, drawn as
  the feature net's training slices are (configs/ct_features.py: lesion_prob 0.5)."""
  src = phantom.PhantomCT(seed=seed, size=SIZE, num_examples=num, lesion_prob=0.5)
  ex = [src[i] for i in range(num)]
  x = pipeline.window(np.stack([e['hu'] for e in ex]), *WINDOW_HU)
  return x, np.array([e['level'] for e in ex], np.float32), np.array([e['lesion_kind'] for e in ex], np.int32)


def export(params, model_fields: dict, out: str, info: dict) -> dict:
  """Writes a trained feature net's params to `out` (msgpack) and `info` + its model fields + the file's
  SHA-256 to `out.json`; returns that record. `Features(out)` loads it."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  blob = flax.serialization.to_bytes(nn.meta.unbox(params))
  with open(out, 'wb') as f:
    f.write(blob)
  record = {**info, 'model': model_fields, 'sha256': hashlib.sha256(blob).hexdigest()}
  with open(out + '.json', 'w') as f:
    json.dump(record, f, indent=1)
  return record

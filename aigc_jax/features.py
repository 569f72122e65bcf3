r"""The feature space of FID, KID, precision/recall and the feature-space memorization audit, offline.

No InceptionV3 download: by default a small CNN that this codebase trains on the built-in phantom to tell
the slice level, the lesion kind and the HU histogram of a slice (anatomy and tissue composition), shipped as
`aigc_jax/assets/ct_features.msgpack` and identified by the SHA-256 of that file. Every report names the file
and its hash, so two FIDs are comparable exactly when the hashes match. Retrain it (deterministic for a seed
on one platform; a new file means a new hash and new numbers) with:

  python -m aigc_jax.train_features --out=aigc_jax/assets/ct_features.msgpack [--steps=1000] [--seed=0]

Inputs are slices windowed to [-1, 1] at any size; they are resized to 32×32 first. The net was trained on
slices windowed to WINDOW_HU (−1000…1000 HU); slices in another window are re-windowed to it first
(`Features(...)(images, window=(lo, hi))`), so a run's HU window does not change its features. Features: the
128 global-average-pooled channels of the last convolution.
"""

import hashlib
import json
import os
import time

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aigc_jax import metrics
from aigc_jax.data import phantom
from aigc_jax.data import pipeline

DEFAULT_PATH = os.path.join(os.path.dirname(__file__), 'assets', 'ct_features.msgpack')
SIZE = 32            # inputs are resized to SIZE × SIZE: coarse anatomy, cheap enough for a 2-core CPU
TRAIN_SEED = 7_000   # phantom seed of the feature net's training slices: apart from every run's 0, 1
KINDS = 3            # lesion_kind: none, lung nodule, liver mass
BINS = 16            # HU histogram over the window, a target that ties the features to tissue composition
WINDOW_HU = (-1000.0, 1000.0)  # the HU window of the training slices: what [-1, 1] means to the net
NOISE_STD = 0.05     # the strongest training noise, in windowed units


def histogram(x: jax.Array) -> jax.Array:
  """Share of pixels in each of BINS equal bins of [-1, 1], per image: [N, H, W] → [N, BINS]."""
  idx = jnp.clip(((x + 1.0) * 0.5 * BINS).astype(jnp.int32), 0, BINS - 1)
  return jnp.mean(jax.nn.one_hot(idx, BINS), axis=(1, 2))


class FeatureNet(nn.Module):
  channels: tuple[int, ...] = (32, 64, 128)

  @nn.compact
  def __call__(self, x):
    """x [N, H, W] in [-1, 1] → (features [N, 128], level [N], lesion-kind logits [N, 3], HU-histogram
    logits [N, BINS])."""
    h = jax.image.resize(x[..., None].astype(jnp.float32), (x.shape[0], SIZE, SIZE, 1), 'bilinear')
    for c in self.channels:
      h = nn.Conv(c, (3, 3))(h)
      h = nn.silu(nn.GroupNorm(8)(h))
      h = nn.Conv(c, (3, 3), strides=(2, 2))(h)
      h = nn.silu(h)
    feats = jnp.mean(h, axis=(1, 2))
    return feats, nn.Dense(1)(feats)[:, 0], nn.Dense(KINDS)(feats), nn.Dense(BINS)(feats)


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
    net = FeatureNet()
    target = nn.meta.unbox(jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE))))['params']
    try:
      self.params = flax.serialization.from_bytes(target, blob)
    except Exception as e:
      raise ValueError(f'{path!r} is not a feature network of this version ({type(e).__name__}); retrain it '
                       'with python -m aigc_jax.train_features.') from None
    self._apply = jax.jit(lambda p, x: net.apply({'params': p}, x)[0])

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
    return in_batches(lambda x: self._apply(self.params, x), images, batch)


def in_batches(fn, images: np.ndarray, batch: int) -> np.ndarray:
  """fn over `images` in batches of `batch`, the last one zero-padded so fn compiles once; float64 out."""
  images = np.asarray(images, np.float32)
  out = []
  for i in range(0, len(images), batch):
    x = images[i:i + batch]
    x = np.concatenate([x, np.zeros((batch - len(x),) + x.shape[1:], np.float32)])
    out.append(np.asarray(fn(x))[:min(batch, len(images) - i)])
  return np.concatenate(out).astype(np.float64)


def training_set(num: int, seed: int = TRAIN_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(windowed slices [num, SIZE, SIZE], level [num], lesion kind [num]) from the phantom at `seed`."""
  src = phantom.PhantomCT(seed=seed, size=SIZE, num_examples=num, lesion_prob=0.5)
  ex = [src[i] for i in range(num)]
  x = pipeline.window(np.stack([e['hu'] for e in ex]), *WINDOW_HU)
  return x, np.array([e['level'] for e in ex], np.float32), np.array([e['lesion_kind'] for e in ex], np.int32)


def training_noise(rng: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """(strength [N, 1, 1] uniform in [0, 1), unit noise [N, H, W]) for slices of `shape`: a training batch
  gets `strength * NOISE_STD * unit` added. Separate keys: from one key, jax draws the first pixel's noise
  from the same bits as the first strength, tying the two together."""
  k_strength, k_noise = jax.random.split(rng)
  return jax.random.uniform(k_strength, (shape[0], 1, 1)), jax.random.normal(k_noise, shape)


def train(out: str, *, steps: int = 1000, num: int = 4096, num_val: int = 512, batch: int = 64, seed: int = 0
          ) -> dict:
  """Trains the feature net (level regression + lesion-kind classification) and writes it to `out`."""
  x, level, kind = training_set(num)
  vx, vlevel, vkind = training_set(num_val, TRAIN_SEED + 1)
  net = FeatureNet()
  params = nn.meta.unbox(net.init(jax.random.PRNGKey(seed), jnp.zeros((1, SIZE, SIZE))))['params']
  tx = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  opt = tx.init(params)

  def loss_fn(p, xb, lb, kb, rng):
    # Noise of a random strength, so that features do not hinge on noise-free pixels (samples have some).
    strength, unit = training_noise(rng, xb.shape)
    xb = xb + strength * NOISE_STD * unit
    _, lv, logits, hist_logits = net.apply({'params': p}, xb)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, kb)
    hist = optax.softmax_cross_entropy(hist_logits, histogram(xb))
    return jnp.mean(jnp.square(lv - lb)) * 10.0 + jnp.mean(ce) + jnp.mean(hist)

  @jax.jit
  def step(p, o, xb, lb, kb, rng):
    loss, g = jax.value_and_grad(loss_fn)(p, xb, lb, kb, rng)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  rng = np.random.default_rng(seed)
  t0 = time.perf_counter()
  for i in range(steps):
    idx = rng.choice(num, min(batch, num), replace=False)
    params, opt, loss = step(params, opt, x[idx], level[idx], kind[idx], jax.random.PRNGKey(seed * 100_003 + i))
    if i % 250 == 0 or i == steps - 1:
      metrics.log(f'feature net step {i}: loss {float(loss):.4f}')
  _, lv, logits, _ = jax.jit(lambda p, v: net.apply({'params': p}, v))(params, vx)
  info = {'steps': steps, 'train_examples': num, 'seed': seed, 'train_s': time.perf_counter() - t0,
          'held_out_level_mae': float(np.mean(np.abs(np.asarray(lv) - vlevel))),
          'held_out_kind_accuracy': float(np.mean(np.argmax(np.asarray(logits), -1) == vkind))}
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'wb') as f:
    f.write(flax.serialization.to_bytes(params))
  info['sha256'] = hashlib.sha256(open(out, 'rb').read()).hexdigest()
  with open(out + '.json', 'w') as f:
    json.dump(info, f, indent=1)
  return info

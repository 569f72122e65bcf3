"""InceptionV3 pool features from a local weights file: FID and KID comparable with the literature.

The network is pytorch-fid's `FIDInceptionA/C/E` variant of InceptionV3 (the port of the TensorFlow graph
that defined FID: average pools that do not count padding, a max pool in the last block), in Flax, with
batch norm folded into a per-channel scale and shift. Nothing downloads: the user points
`python -m aigc_jax.evaluate --inception=PATH` at weights they have, either

  * `.npz` of the PyTorch state dict (keys such as `Mixed_5b.branch1x1.conv.weight`), made once with
      python -c "import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth');
                 np.savez('inception_fid.npz', **{k: v.numpy() for k, v in sd.items()})"
  * or the `.pth` itself when torch is installed.

Reports name the file by its SHA-256. Windowed CT slices ([-1, 1], `pipeline.window`) are repeated to
three channels and resized bilinearly to 299×299, as pytorch-fid feeds the network ([0, 1] images
resized, then mapped to [-1, 1]: the same thing, the resize being linear).
"""

import hashlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.core import evaluation

BN_EPS = 1e-3
SIZE = 299


class BasicConv(nn.Module):
  """conv (no bias) → batch norm (inference, folded) → ReLU."""
  features: int
  kernel: tuple
  strides: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.strides, [(p, p) for p in self.padding], use_bias=False,
                name='conv')(x)
    scale = self.param('scale', nn.initializers.ones, (self.features,))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return nn.relu(x * scale + bias)


def _avg_pool(x):
  # 3×3, stride 1, pad 1, padding not counted (TF's graph; pytorch-fid's count_include_pad=False).
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class BlockA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class BlockB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class BlockC(nn.Module):
  c7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.c7
    b1 = BasicConv(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, (1, 1), name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class BlockD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class BlockE(nn.Module):
  max_pool: bool  # the last block pools by max in the FID graph, the one before by average

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], -1)
    bd = BasicConv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], -1)
    pooled = _max_pool(x, stride=1, pad=1) if self.max_pool else _avg_pool(x)
    bp = BasicConv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionV3(nn.Module):
  """[N, 299, 299, 3] in [-1, 1] → the 2048 pool features FID uses."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool(x)
    x = BlockA(32, name='Mixed_5b')(x)
    x = BlockA(64, name='Mixed_5c')(x)
    x = BlockA(64, name='Mixed_5d')(x)
    x = BlockB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = BlockC(c7, name=name)(x)
    x = BlockD(name='Mixed_7a')(x)
    x = BlockE(False, name='Mixed_7b')(x)
    x = BlockE(True, name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


def params_from_state_dict(sd: dict) -> dict:
  """Flax params from a PyTorch InceptionV3 state dict (numpy arrays), batch norm folded.

  Every BasicConv2d of the network must be present (`<path>.conv.weight`, `<path>.bn.{weight, bias,
  running_mean, running_var}`); the classifier (`fc.*`) and anything else is not needed and ignored.
  """
  target = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))['params']
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
    keys = [p.key for p in path]
    flat.setdefault(tuple(keys[:-2] if keys[-1] == 'kernel' else keys[:-1]), {})[keys[-1]] = leaf.shape
  out = {}
  for mod, shapes in flat.items():
    prefix = '.'.join(mod)
    try:
      w, gamma, beta, mean, var = (np.asarray(sd[f'{prefix}.{k}'], np.float32) for k in (
          'conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'))
    except KeyError as e:
      raise ValueError(f'The Inception weights lack {e.args[0]!r}: not an InceptionV3 state dict with '
                       "torchvision/pytorch-fid names (e.g. 'Mixed_5b.branch1x1.conv.weight').") from None
    kernel = w.transpose(2, 3, 1, 0)  # OIHW → HWIO
    if kernel.shape != shapes['kernel']:
      raise ValueError(f'{prefix}.conv.weight has shape {w.shape}; InceptionV3 has {shapes["kernel"]} (HWIO).')
    scale = gamma / np.sqrt(var + BN_EPS)
    node = out
    for k in mod:
      node = node.setdefault(k, {})
    node.update({'conv': {'kernel': kernel}, 'scale': scale, 'bias': beta - mean * scale})
  return out


def load_state_dict(path: str) -> dict:
  if path.endswith('.npz'):
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f'{path!r} is a PyTorch file and torch is not installed here; convert it once where torch '
                     'is (see aigc_jax/imaging/inception.py) and pass the .npz.') from None
  return {k: v.numpy() for k, v in torch.load(path, map_location='cpu', weights_only=True).items()}


class InceptionFeatures:
  """InceptionV3 pool features of windowed slices [N, H, W] in [-1, 1]; `.name` is what reports print."""

  def __init__(self, path: str):
    if not os.path.exists(path):
      raise FileNotFoundError(f'Inception weights {path!r} not found; --inception takes a local file (see '
                              'aigc_jax/imaging/inception.py for the formats). Nothing is downloaded.')
    self.path = path
    self.sha256 = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    self.params = params_from_state_dict(load_state_dict(path))
    net = InceptionV3()
    self._apply = jax.jit(lambda p, x: net.apply({'params': p}, preprocess(x)))

  @property
  def name(self) -> str:
    return f'InceptionV3 (FID) {os.path.basename(self.path)} sha256:{self.sha256[:16]}'

  def __call__(self, images: np.ndarray, batch: int = 16) -> np.ndarray:
    return evaluation.in_batches(lambda x: self._apply(self.params, x), images, batch)


def preprocess(x: jax.Array) -> jax.Array:
  """[N, H, W] in [-1, 1] → [N, 299, 299, 3], bilinear as torch's align_corners=False."""
  x = jnp.repeat(x[..., None], 3, axis=-1)
  # antialias=False: torch.nn.functional.interpolate(bilinear) does not filter, which matters when shrinking.
  return jax.image.resize(x, (x.shape[0], SIZE, SIZE, 3), 'bilinear', antialias=False)

r"""The PyTorch side of the InceptionV3 parity test (tests/test_inception.py), run once where torch is:

  .venv/bin/python tests/inception_parity.py weights /tmp/inception_random.npz      # needs jax
  /tmp/peer/bin/pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0 pillow
  /tmp/peer/bin/python tests/inception_parity.py torch /tmp/inception_random.npz    # needs torch
                                                 # → tests/data/inception_parity.npz

Random weights (`random_state_dict`, numpy, seeded) go into pytorch-fid's FID InceptionV3, built as its
`fid_inception_v3` builds it but without the download; its pool features of two fixed inputs are saved. The
test loads the same weights into aigc_jax/imaging/inception.py and must reproduce them, with no torch in CI.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, 'data', 'inception_parity.npz')


def random_state_dict(seed: int = 0) -> dict:
  """A PyTorch-named InceptionV3 state dict with He-scaled random convs and random batch-norm statistics."""
  sys.path.insert(0, os.path.dirname(HERE))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from aigc_jax.imaging import inception  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(inception.InceptionV3().init, jax.random.PRNGKey(0),
                          jnp.zeros((1, inception.SIZE, inception.SIZE, 3)))['params']
  rng = np.random.default_rng(seed)
  sd = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    keys = [p.key for p in path]
    if keys[-1] != 'kernel':
      continue
    prefix = '.'.join(keys[:-2])
    kh, kw, cin, cout = leaf.shape
    sd[f'{prefix}.conv.weight'] = (rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(2.0 / (kh * kw * cin))
                                   ).astype(np.float32)
    sd[f'{prefix}.bn.weight'] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    sd[f'{prefix}.bn.bias'] = rng.normal(0.0, 0.1, cout).astype(np.float32)
    sd[f'{prefix}.bn.running_mean'] = rng.normal(0.0, 0.1, cout).astype(np.float32)
    sd[f'{prefix}.bn.running_var'] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
  return sd


def inputs() -> np.ndarray:
  """Two 64×64 'windowed slices' in [0, 1]: a smooth disc and noise."""
  yy, xx = np.mgrid[:64, :64] / 63.0
  disc = ((xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.16).astype(np.float32) * (0.3 + 0.5 * xx)
  return np.stack([disc, np.random.default_rng(1).uniform(0, 1, (64, 64))]).astype(np.float32)


def main(step: str, weights: str):
  if step == 'weights':
    np.savez(weights, **random_state_dict())
    return
  import torch  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  # torchvision's compiled ops (nms, ...) may not load against a locally built torch; the Inception layers
  # need none of them, only the fake-kernel registrations for them fail at import. Skip those.
  sys.modules.setdefault('torchvision._meta_registrations', types.ModuleType('torchvision._meta_registrations'))
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from pytorch_fid import inception as fid  # pylint: disable=g-import-not-at-top
  net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)  # pylint: disable=protected-access
  net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = (fid.FIDInceptionA(192, 32), fid.FIDInceptionA(256, 64),
                                              fid.FIDInceptionA(288, 64))
  net.Mixed_6b, net.Mixed_6c = fid.FIDInceptionC(768, 128), fid.FIDInceptionC(768, 160)
  net.Mixed_6d, net.Mixed_6e = fid.FIDInceptionC(768, 160), fid.FIDInceptionC(768, 192)
  net.Mixed_7b, net.Mixed_7c = fid.FIDInceptionE_1(1280), fid.FIDInceptionE_2(2048)
  missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(weights).items()},
                                            strict=False)
  assert not unexpected, unexpected
  assert all(k.startswith('fc.') or k.endswith('num_batches_tracked') for k in missing), missing
  net.eval()
  x = torch.from_numpy(inputs())[:, None].repeat(1, 3, 1, 1)
  with torch.no_grad():  # pytorch_fid.inception.InceptionV3.forward, resize_input and normalize_input on
    h = 2 * F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False) - 1
    for layer in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1, net.Conv2d_3b_1x1,
                  net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a,
                  net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c):
      h = layer(h)
    feats = h.mean(dim=(2, 3)).numpy()
  np.savez_compressed(FIXTURE, features=feats.astype(np.float32))
  print(FIXTURE, feats.shape, float(np.abs(feats).mean()))


if __name__ == '__main__':
  main(*sys.argv[1:])

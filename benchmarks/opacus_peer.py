r"""The PyTorch + Opacus peer of our DP-SGD step on `configs/ct_classify.py:runlocal`, for the same machine.

  /tmp/peer/bin/python benchmarks/opacus_peer.py [--batch=256] [--steps=8] [--warmup=2]   (venv: requirements-peer.txt)

The network is ct_feature_net (aigc_jax/models/feature_net.py) at runlocal size, layer by layer: for each of the
channels (16, 32, 64) a 3×3 conv, GroupNorm(8) (flax's ε = 1e-6), SiLU, a 3×3 stride-2 conv, SiLU; a mean over
the 32×32 → 4×4 map; three dense heads (level 1, lesion kind 3, HU histogram 16): 73,316 parameters, asserted
equal to ours. The strided convs pad 1 on each side where flax's 'SAME' pads 0 before and 1 after: the same
output shapes and FLOPs, the pixels shifted by one.

One step is what ours trains on: a batch of `--batch` 32×32 slices (random inputs, drawn once: the step alone
is timed, as in `python -m aigc_jax.benchmark`), ours' input noise of a random strength (0.02 · U(0, 1) · N(0, 1)
per slice), cross-entropy over 3 classes, Adam, `loss.item()` at the end (ours blocks on the step too).
  non-DP: plain autograd and torch.optim.Adam.
  DP:     Opacus' PrivacyEngine.make_private (GradSampleModule, per-example gradients by its hooks; DPOptimizer:
          each example's gradient clipped to norm 1.0, Gaussian noise σ = 1.0 once per step, divided by the
          expected batch) around the same Adam, over exactly `--batch` rows.
Ours' DP step instead processes the Poisson batch padded to its capacity (357 rows for an expected 256):
benchmarks/dp_side_by_side.sh compares both per expected example as well as per step.

Also prints the ε of Opacus' own RDP accountant for runlocal_dp's plan (q = 256 / 4,096, σ = 1, 300 steps,
δ = 1e-5), to set beside ours (dp_accounting's RDP: 8.18). Prints one JSON line last: params, batch,
nondp_s_per_step, dp_s_per_step, ratio (DP / non-DP), opacus_rdp_epsilon, torch and opacus versions, threads.
"""

import argparse
import copy
import json
import os
import statistics
import time

import opacus
from opacus.accountants import RDPAccountant
import torch
from torch import nn
import torch.nn.functional as F

OURS_PARAMS = 73_316  # python -m aigc_jax.benchmark --config=configs/ct_classify.py:runlocal (tests/test_benchmark.py)


class FeatureNet(nn.Module):
  """ct_feature_net: x [N, 1, 32, 32] → (level [N], logits [N, num_classes], histogram [N, bins])."""

  def __init__(self, channels=(16, 32, 64), num_classes=3, bins=16):
    super().__init__()
    body, c_in = [], 1
    for c in channels:
      body += [nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(8, c, eps=1e-6), nn.SiLU(),
               nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU()]
      c_in = c
    self.body = nn.Sequential(*body)
    self.level = nn.Linear(c_in, 1)
    self.logits = nn.Linear(c_in, num_classes)
    self.histogram = nn.Linear(c_in, bins)

  def forward(self, x):
    feats = self.body(x).mean(dim=(2, 3))
    return self.level(feats)[:, 0], self.logits(feats), self.histogram(feats)


def opacus_epsilon(rate: float, sigma: float, steps: int, delta: float) -> float:
  acc = RDPAccountant()
  acc.history = [(sigma, rate, steps)]  # what `steps` calls of acc.step(...) with the same q and σ leave
  return float(acc.get_epsilon(delta=delta))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch', type=int, default=256, help='rows per step (non-DP and DP alike)')
  p.add_argument('--steps', type=int, default=8, help='timed training steps of each kind')
  p.add_argument('--warmup', type=int, default=2, help='untimed training steps first')
  p.add_argument('--img', type=int, default=32)
  p.add_argument('--num_train', type=int, default=4_096, help='the dataset Opacus samples from (its q = batch / N)')
  p.add_argument('--lr', type=float, default=2e-3)
  p.add_argument('--grad_sample_mode', default='hooks', help="Opacus' per-example gradients: hooks | functorch | ew")
  p.add_argument('--threads', type=int, default=os.cpu_count())
  a = p.parse_args()
  torch.manual_seed(0)
  torch.set_num_threads(a.threads)

  model = FeatureNet()
  params = sum(x.numel() for x in model.parameters())
  assert params == OURS_PARAMS, f'{params:,} parameters here, {OURS_PARAMS:,} in ours: the networks differ'
  print(f'parameters: {params:,} (ours: {OURS_PARAMS:,})', flush=True)

  x = torch.rand(a.batch, 1, a.img, a.img) * 2 - 1
  y = torch.randint(0, 3, (a.batch,))

  def make_step(net, opt):
    def step():
      noisy = x + torch.rand(a.batch, 1, 1, 1) * 0.02 * torch.randn_like(x)
      opt.zero_grad(set_to_none=True)
      level, logits, hist = net(noisy)
      # Ours trains the kind head only (histogram_weight 0, no regression) but its DP step still clips and
      # noises the other heads' (zero) gradients: a zero-weighted term keeps them in Opacus' work too.
      loss = F.cross_entropy(logits, y) + 0.0 * (level.sum() + hist.sum())
      loss.backward()
      opt.step()
      return loss.item()
    return step

  def timed(step):
    times = []
    for i in range(a.warmup + a.steps):
      t0 = time.perf_counter()
      step()
      if i >= a.warmup:
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

  # Two copies from one initialization: Opacus wraps its model in place.
  plain = copy.deepcopy(model)
  nondp_s = timed(make_step(plain, torch.optim.Adam(plain.parameters(), lr=a.lr)))

  private = copy.deepcopy(model)
  # The loader only tells Opacus N and the expected batch (the divisor of the noisy sum); the timed steps
  # take the fixed batch above, so each processes exactly `batch` rows.
  loader = torch.utils.data.DataLoader(
      torch.utils.data.TensorDataset(torch.zeros(a.num_train, 1, a.img, a.img), torch.zeros(a.num_train).long()),
      batch_size=a.batch)
  engine = opacus.PrivacyEngine(accountant='rdp')
  private, dp_opt, _ = engine.make_private(
      module=private, optimizer=torch.optim.Adam(private.parameters(), lr=a.lr), data_loader=loader,
      noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode=a.grad_sample_mode)
  dp_s = timed(make_step(private, dp_opt))

  eps = opacus_epsilon(256 / 4_096, 1.0, 300, 1e-5)
  print(f'Opacus RDP accountant, q=256/4096, sigma=1, 300 steps, delta=1e-5: epsilon = {eps:.3f} '
        '(ours, dp_accounting RDP: 8.18)', flush=True)
  print(json.dumps({'framework': f'torch {torch.__version__}', 'opacus': opacus.__version__, 'params': params,
                    'batch': a.batch, 'img': a.img, 'threads': a.threads, 'grad_sample_mode': a.grad_sample_mode,
                    'nondp_s_per_step': round(nondp_s, 5), 'dp_s_per_step': round(dp_s, 5),
                    'ratio': round(dp_s / nondp_s, 3), 'opacus_rdp_epsilon': round(eps, 4),
                    'glibc_tunables': os.environ.get('GLIBC_TUNABLES', '')}), flush=True)


if __name__ == '__main__':
  main()

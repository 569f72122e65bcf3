r"""The PyTorch peer of `python -m aigc_jax.benchmark --config=configs/ct.py:monai`, for the same machine.

  /tmp/peer/bin/python benchmarks/monai_peer.py [--steps=8] [--warmup=2]   (venv: requirements-peer.txt)

MONAI 1.6.1's DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(64, 128, 128),
attention_levels=(False, True, True), num_res_blocks=1, num_head_channels=64, norm_num_groups=32):
4,634,305 parameters, the same network as configs/ct.py:monai. One training step is what ours does: a
batch of 16 64×64 images, DDPM noise at uniform timesteps, ε-prediction MSE, AdamW, `loss.item()` at the
end (ours blocks on the step too). Sampling is a real DDIM-50 loop of 16 images with MONAI's scheduler.
Prints one JSON line with the keys ours uses: params, train_s_per_step (median after warm-up),
train_img_per_s, sample_s.
"""

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler
from monai.networks.schedulers import DDPMScheduler


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--steps', type=int, default=8, help='timed training steps')
  p.add_argument('--warmup', type=int, default=2, help='untimed training steps first')
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--img', type=int, default=64)
  p.add_argument('--sample_images', type=int, default=16)
  p.add_argument('--threads', type=int, default=os.cpu_count())
  a = p.parse_args()
  torch.manual_seed(0)
  torch.set_num_threads(a.threads)
  model = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(64, 128, 128),
                             attention_levels=(False, True, True), num_res_blocks=1, num_head_channels=64,
                             norm_num_groups=32)
  params = sum(x.numel() for x in model.parameters())
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  ddpm = DDPMScheduler(num_train_timesteps=1000)

  def step():
    x0 = torch.rand(a.batch, 1, a.img, a.img) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (a.batch,))
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(model(ddpm.add_noise(x0, noise, t), timesteps=t), noise)
    loss.backward()
    opt.step()
    return loss.item()

  model.train()
  times = []
  for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    step()
    if i >= a.warmup:
      times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)

  model.eval()
  ddim = DDIMScheduler(num_train_timesteps=1000)
  ddim.set_timesteps(50)
  with torch.inference_mode():
    x = torch.randn(a.sample_images, 1, a.img, a.img)
    t0 = time.perf_counter()
    for t in ddim.timesteps:
      eps = model(x, timesteps=torch.full((a.sample_images,), int(t), dtype=torch.long))
      x, _ = ddim.step(eps, int(t), x)
    sample_s = time.perf_counter() - t0

  print(json.dumps({'framework': f'torch {torch.__version__}', 'params': params, 'batch': a.batch, 'img': a.img,
                    'threads': a.threads, 'train_s_per_step': round(step_s, 4),
                    'train_img_per_s': round(a.batch / step_s, 4), 'sample_s': round(sample_s, 3),
                    'glibc_tunables': os.environ.get('GLIBC_TUNABLES', '')}), flush=True)


if __name__ == '__main__':
  main()

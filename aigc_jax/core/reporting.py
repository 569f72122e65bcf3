"""What a run reports: TensorBoard events and PNG grids (process 0 only), the progress line, the NaN guard."""

import json
import math
import os
import time

from absl import logging
import jax
import numpy as np
from PIL import Image


class NonFiniteLossError(FloatingPointError):
  """Training produced NaN or Inf; the last good checkpoint is kept."""


def check_finite(metrics: dict[str, float], step: int, last_checkpoint: int | None) -> None:
  bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
  if bad:
    kept = f'checkpoint {last_checkpoint} is kept' if last_checkpoint is not None else 'no checkpoint was saved yet'
    raise NonFiniteLossError(
        f'Non-finite metrics {bad} at step {step}; stopping ({kept}). Lower config.optim.learning_rate, '
        'keep config.optim.grad_clip_norm > 0, or check the data for NaN/Inf; then rerun the same command '
        'to resume from the last good checkpoint.')


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
  """[N, H, W, C] in [-1, 1] → one uint8 [rows*H, cols*W, C] grid with a 1-pixel border."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.uint8)
  pix = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = pix[i]
  return grid


def save_png(path: str, grid: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


class Writer:
  """TensorBoard events via tensorboardX (no TensorFlow) in `<workdir>/tensorboard`, and the same scalars as
  JSON lines in `<workdir>/metrics.jsonl` for plotting without TensorBoard. Silent off process 0."""

  def __init__(self, workdir: str):
    self._tb = self._jsonl = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # imported here so that other processes never open a file
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._tb:
      for k, v in values.items():
        self._tb.add_scalar(k, v, step)
      self._jsonl.write(json.dumps({'step': step, **values}) + '\n')

  def image(self, step: int, name: str, grid: np.ndarray) -> None:
    if self._tb:
      self._tb.add_image(name, grid, step, dataformats='HWC')

  def text(self, step: int, name: str, text: str) -> None:
    if self._tb:
      self._tb.add_text(name, text, step)

  def flush(self) -> None:
    if self._tb:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self._tb:
      self._tb.close()
      self._jsonl.close()


class Progress:
  """Throughput and ETA between logging steps; the clock restarts after pauses (sampling, checkpoints)."""

  def __init__(self, start_step: int, num_steps: int, batch_size: int):
    self.num_steps, self.batch_size = num_steps, batch_size
    self._step, self._time = start_step, time.perf_counter()
    self._train_time = 0.0

  def pause(self) -> None:
    self._train_time += time.perf_counter() - self._time

  def resume(self) -> None:
    self._time = time.perf_counter()

  def tick(self, step: int) -> dict[str, float]:
    """Call at a logging step after blocking on the device; returns throughput metrics."""
    self.pause()
    steps, seconds = step - self._step, max(self._train_time, 1e-9)
    self._step, self._train_time = step, 0.0
    self.resume()
    steps_per_s = steps / seconds
    return {'steps_per_s': steps_per_s, 'examples_per_s': steps_per_s * self.batch_size,
            'eta_s': (self.num_steps - step) / max(steps_per_s, 1e-9)}


def progress_line(step: int, num_steps: int, metrics: dict[str, float], speed: dict[str, float]) -> str:
  eta = int(speed['eta_s'])
  # The task's own metrics too (a GAN's d_loss / g_loss, a VAE's kl), a few at most to keep one line.
  extra = [k for k in sorted(metrics) if k not in ('loss', 'lr', 'grad_norm')][:4]
  return (f'step {step}/{num_steps}  loss {metrics["loss"]:.4f}  '
          + ''.join(f'{k} {metrics[k]:.4g}  ' for k in extra)
          + f'lr {metrics.get("lr", 0):.2e}  grad_norm {metrics.get("grad_norm", 0):.3f}  '
          f'{speed["examples_per_s"]:.1f} examples/s  ETA {eta // 3600:d}:{eta // 60 % 60:02d}:{eta % 60:02d}')


class _LibraryInfoFilter:
  """Drops INFO chatter from libraries (orbax logs ~40 lines per save) while keeping their warnings."""

  _NOISY = (f'{os.sep}orbax{os.sep}', f'{os.sep}jax{os.sep}', f'{os.sep}grain{os.sep}')

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(n in record.pathname for n in self._NOISY)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler; our own INFO lines (progress, samples) stay."""
  logging.get_absl_handler().addFilter(_LibraryInfoFilter())


def log(msg: str) -> None:
  if jax.process_index() == 0:
    logging.info('%s', msg)

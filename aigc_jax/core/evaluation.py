"""Evaluators: what the trainer runs on held-out data at intervals, and `aigc_jax.evaluate` runs offline.

An evaluator is named in the config (as big_vision's `config.evals`):

  config.evals.<name> = ConfigDict(type='<registered type>', every=<steps>, <its own fields>)

and built once per run with the run's task (`aigc_jax.registry.build_evaluators`). The trainer calls it at
every multiple of `every` and at the last step with the EMA parameters and a fixed key; it returns an
`Output` of scalars, images and texts, which the trainer writes as `<name>/<key>` to TensorBoard and
`metrics.jsonl` (scalars), `<workdir>/<name>/<key>_<step>.png` (images) and `<workdir>/<name>/<key>_<step>.txt`
(texts). The core knows nothing of what is measured: a classifier logs accuracy and a confusion matrix, a
language model perplexity and generated text, a generator images; one with no images writes none.
"""

import dataclasses
import os
import time
import zlib
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from aigc_jax.core import reporting


@dataclasses.dataclass
class Output:
  """What one evaluation produced. `images` are uint8 or [0, 1] float [H, W, C] pictures (a grid already
  composed: `reporting.image_grid`); `texts` are strings written as files and TensorBoard text."""
  scalars: dict[str, float] = dataclasses.field(default_factory=dict)
  images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  texts: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Context:
  """Where an evaluation runs: the sharding that spreads a batch of work over the devices, and a gather that
  brings a sharded result to every process's host (every process must call it)."""
  batch_sharding: jax.sharding.Sharding | None = None

  def gather(self, x: Any) -> Any:
    if jax.process_count() == 1:
      return jax.device_get(x)
    return multihost_utils.process_allgather(x, tiled=True)

  @property
  def is_chief(self) -> bool:
    """Process 0: the one that writes, so the one that needs host-side scores."""
    return jax.process_index() == 0


class Evaluator:
  """Base class: checks and keeps its config (`every` and the fields of `fields`, defaults filled in).
  Subclasses set `fields` ({field: default}) and implement `run`.

  The constructor's arguments are given by the registry: the evaluator's own config, its name in
  `config.evals`, and the run's config, task and data source (None where a caller has none).
  """

  fields: dict[str, Any] = {}

  def __init__(self, cfg: ml_collections.ConfigDict, *, name: str, config: ml_collections.ConfigDict, task: Any,
               data: Any = None):
    self.name, self.config, self.task, self.data = name, config, task, data
    self.cfg = check_fields(cfg, name, self.fields)
    self.every = int(self.cfg.every)

  def run(self, params: Any, rng: jax.Array, ctx: Context) -> Output:
    raise NotImplementedError

  def needs(self, method: str) -> None:
    """Refuses, at build time and by name, a task that lacks the `method` this evaluator calls."""
    if not callable(getattr(self.task, method, None)):
      raise ValueError(f'config.evals.{self.name} (type {self.cfg.get("type")!r}) calls the task\'s {method}(); '
                       f'config.task.name={self.config.task.name!r} has none: drop the evaluator or pick another '
                       'type.')

  def due(self, step: int, is_last: bool) -> bool:
    return self.every > 0 and (step % self.every == 0 or is_last)


def check_fields(cfg: ml_collections.ConfigDict, name: str, allowed: dict[str, Any]) -> ml_collections.ConfigDict:
  """`cfg` with defaults filled in for `allowed` fields ({field: default}); an unknown field is refused by
  name, so that a typo in `--config.evals.<name>.<field>` does not pass silently."""
  known = {'type', 'every', *allowed}
  unknown = sorted(set(cfg) - known)
  if unknown:
    raise ValueError(f'config.evals.{name} has field(s) {unknown} that a {cfg.get("type")!r} evaluator does not '
                     f'take; it takes {sorted(known)}.')
  out = ml_collections.ConfigDict({'every': 0, **allowed})
  out.update(dict(cfg))
  return out


def write(name: str, output: Output, step: int, writer: reporting.Writer, workdir: str) -> None:
  """Logs one evaluator's output (process 0 writes; the others' writer is silent)."""
  if output.scalars:
    writer.scalars(step, {f'{name}/{k}': float(v) for k, v in output.scalars.items()})
  for key, image in output.images.items():
    writer.image(step, f'{name}/{key}', image)
    if jax.process_index() == 0:
      reporting.save_png(os.path.join(workdir, name, f'{key}_{step:07d}.png'), image)
  for key, text in output.texts.items():
    writer.text(step, f'{name}/{key}', text)
    if jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, name), exist_ok=True)
      with open(os.path.join(workdir, name, f'{key}_{step:07d}.txt'), 'w') as f:
        f.write(text)


def in_batches(fn, images: np.ndarray, batch: int) -> np.ndarray:
  """fn over `images` in batches of `batch`, the last one zero-padded so fn compiles once; float64 out."""
  images = np.asarray(images, np.float32)
  out = []
  for i in range(0, len(images), batch):
    x = images[i:i + batch]
    x = np.concatenate([x, np.zeros((batch - len(x),) + x.shape[1:], np.float32)])
    out.append(np.asarray(fn(x))[:min(batch, len(images) - i)])
  return np.concatenate(out).astype(np.float64)


def eval_key(step: int) -> jax.Array:
  """The key of every evaluation at `step`: fixed per step, so reruns and resumes draw the same."""
  return jax.random.fold_in(jax.random.PRNGKey(0x5A3), step)


def run_due(evaluators: dict[str, Evaluator], params: Any, step: int, is_last: bool, ctx: Context,
            writer: reporting.Writer, workdir: str, *, force: bool = False,
            on_output: Callable[[str, Output], None] | None = None) -> dict[str, Output]:
  """Runs the evaluators due at `step` (all of them with `force`), writes their outputs and returns them."""
  outputs = {}
  for name, ev in evaluators.items():
    if not (force or ev.due(step, is_last)):
      continue
    t0 = time.perf_counter()
    out = ev.run(params, jax.random.fold_in(eval_key(step), _name_hash(name)), ctx)
    write(name, out, step, writer, workdir)
    outputs[name] = out
    if on_output:
      on_output(name, out)
    reporting.log(f'{name} at step {step} in {time.perf_counter() - t0:.1f}s'
                  + ''.join(f'; {k} {v:.4g}' for k, v in out.scalars.items())
                  + (f'; wrote {", ".join(out.images)}' if out.images else ''))
  return outputs


def _name_hash(name: str) -> int:
  """A stable integer per evaluator name (Python's hash() of a str changes between processes)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF

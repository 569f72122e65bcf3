"""A run assembled from its config: the registered task, data source and evaluators handed to the one
trainer (`train_and_evaluate`, `compile_report`), and a finished run rebuilt from its workdir (`load_run`,
`generate`) for the commands that sample, evaluate or restore with it."""

import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from aigc_jax import registry
from aigc_jax.core import checkpoint
from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.core import train
from aigc_jax.core import train_state
from aigc_jax.core import workdir as workdir_lib
from aigc_jax.data import pipeline


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  """Trains the run `config` describes in `workdir` (resuming there); returns the final state."""
  checkpoint.check_workdir(workdir)  # the data source may keep a file there (the text source's tokenizer)
  task = registry.build_task(config)
  data = registry.build_data(config, workdir)
  return train.train_and_evaluate(config, workdir, task=task, data=data,
                                  evaluators=registry.build_evaluators(config, task, data))


def compile_report(config: ml_collections.ConfigDict) -> dict[str, float]:
  """`train.compile_report` for the task and data `config` names (no evaluators: they do not compile here)."""
  return train.compile_report(config, registry.build_task(config), registry.build_data(config))


def abstract_params(task: Any, data: Any) -> Any:
  """The shapes of `task`'s parameters for `data` (jax.ShapeDtypeStructs; nothing is computed)."""
  return nn.meta.unbox(jax.eval_shape(lambda k: task.init(k, data.batch_spec(1)), jax.random.PRNGKey(0)))


def load_run(workdir: str, task_overrides: dict | None = None, *, with_data: bool = False):
  """(config, task, EMA params, step) of the newest checkpoint in a training workdir that restores; with
  `with_data`, also the run's data source (as it was trained: the text source reads the run's tokenizer)."""
  config = workdir_lib.load_config(workdir)
  for key, value in (task_overrides or {}).items():
    config.task[key] = value
  task = registry.build_task(config)
  data = registry.build_data(config, workdir)
  params, step = workdir_lib.ema_params(workdir, abstract_params(task, data))
  task.check_params(params)
  return (config, task, params, step, data) if with_data else (config, task, params, step)


def generate(workdir: str, *, num: int, seed: int = 0, batch: int = 16, overrides: dict | None = None,
             label: int = -1) -> tuple[np.ndarray, int, ml_collections.ConfigDict]:
  """[num, H, W] images in HU from the latest EMA parameters in `workdir`; also the step and the config."""
  config, task, params, step = load_run(workdir, overrides)
  shape = (batch,) + tuple(pipeline.batch_spec(config.data, 1)['image'].shape[1:])
  labels = None
  if label >= 0:
    if not 0 <= label < config.model.num_classes:
      raise ValueError(f'--label={label}: this model has config.model.num_classes={config.model.num_classes}.')
    labels = np.full((batch,), label, np.int32)
  sample = jax.jit(lambda p, k: task.sample(p, k, shape, labels))
  out = []
  for i in range(-(-num // batch)):
    out.append(np.asarray(sample(params, jax.random.fold_in(jax.random.PRNGKey(seed), i))))
  images = np.concatenate(out)[:num, ..., 0]
  return pipeline.unwindow(images, config.data.window_lo, config.data.window_hi), step, config


def run_evaluators(workdir: str, *, names: tuple[str, ...] = (), out_dir: str = '') -> tuple[dict, int]:
  """Runs the evaluators of the run's config (`names`, or all) once on its newest checkpoint's EMA params,
  with the key the trainer uses at that step; writes them under `out_dir` (default `<workdir>/eval`).

  Returns ({name: evaluation.Output}, step).
  """
  config, task, params, step, data = load_run(workdir, with_data=True)
  evaluators = registry.build_evaluators(config, task, data)
  unknown = sorted(set(names) - set(evaluators))
  if unknown:
    raise ValueError(f'--evals={",".join(names)}: {unknown} not in the run\'s config.evals ({sorted(evaluators)}).')
  if names:
    evaluators = {k: v for k, v in evaluators.items() if k in names}
  out_dir = out_dir or os.path.join(workdir, 'eval')
  os.makedirs(out_dir, exist_ok=True)
  writer = reporting.Writer(out_dir)
  try:
    outputs = evaluation.run_due(evaluators, params, step, True, evaluation.Context(), writer, out_dir, force=True)
  finally:
    writer.close()
  return outputs, step

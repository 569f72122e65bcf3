"""The one training loop: mesh → data → state → jit(step) → log / evaluate / checkpoint.

Modality-free: it is given a task (`aigc_jax/tasks/task.py`), a data source (`batch_spec`, `make_dataset`) and
evaluators (`aigc_jax/core/evaluation.py`), and knows nothing of images or text.
`aigc_jax.experiment.train_and_evaluate(config, workdir)` builds them from the config and calls
`train_and_evaluate` here; that is what `main.py` and the tests call.
"""

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax.core import checkpoint
from aigc_jax.core import evaluation
from aigc_jax.core import optim
from aigc_jax.core import preemption
from aigc_jax.core import reporting
from aigc_jax.core import sharding
from aigc_jax.core import train_state
from aigc_jax.core import warm_start
from aigc_jax.core.privacy import accountant
from aigc_jax.core.privacy import dp_sgd
from aigc_jax.core.privacy import sampling


def train_step(state: train_state.TrainState, batch: dict[str, jax.Array], *, task: Any,
               tx: optax.GradientTransformation, lr_schedule: optax.Schedule, ema_decay: float,
               grads_fn: Any = None) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One optimizer step; pure, jitted once in `train_and_evaluate` with the state donated. `grads_fn`
  (params, batch, rng) → (grads, metrics) replaces `task.grads` (DP-SGD's private gradient)."""
  rng = jax.random.fold_in(state.rng, state.step)
  grads, step_metrics = (grads_fn or task.grads)(state.params, batch, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state,
      ema_params=train_state.ema_update(state.ema_params, params,
                                        train_state.ema_decay_at(state.step, ema_decay)))
  step_metrics = {**step_metrics, 'grad_norm': optax.global_norm(grads), 'lr': lr_schedule(state.step)}
  return new_state, step_metrics


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """One device→host transfer for all steps since the last log."""
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


@dataclasses.dataclass(frozen=True)
class _Setup:
  """Everything derived from the config before any data is read or any parameter exists."""
  mesh: jax.sharding.Mesh
  task: Any
  spec: dict[str, jax.ShapeDtypeStruct]
  init_fn: Any
  abstract: train_state.TrainState
  state_shardings: Any
  batch_sharding: jax.sharding.NamedSharding
  step_fn: Any
  plan: accountant.Plan | None  # a differentially private run's sampling and noise

  @property
  def abstract_state(self) -> Any:
    """ShapeDtypeStructs that carry their shardings: restore targets and ahead-of-time inputs."""
    return checkpoint.abstract_with_shardings(self.abstract, self.state_shardings)

  @property
  def num_params(self) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.abstract.params))


def privacy_plan(config: ml_collections.ConfigDict, task: Any, data: Any, mesh: jax.sharding.Mesh
                 ) -> accountant.Plan | None:
  """The DP-SGD plan of a run with `config.privacy.enabled` (None without), checked against its task and data."""
  p = config.get('privacy')
  if not p or not p.get('enabled'):
    return None
  if not hasattr(data, 'num_train'):
    raise ValueError(f'config.privacy.enabled: the data source {config.data.name!r} cannot be Poisson-sampled '
                     '(it does not say how many training examples it has).')
  spec = data.batch_spec(1)
  params = jax.eval_shape(task.init, jax.random.PRNGKey(0), spec)
  try:
    jax.eval_shape(task.per_example_loss, nn.meta.unbox(params), spec, jax.random.PRNGKey(0))
  except NotImplementedError:
    raise ValueError(f'config.privacy.enabled: the task {config.task.name!r} has no per-example loss, which '
                     'DP-SGD clips per example; train it without config.privacy.') from None
  # The capacity divides over the data-parallel devices, the processes and the sequential chunks.
  multiple = math.lcm(mesh.shape['data'] * mesh.shape['fsdp'], jax.process_count(), int(p.get('microbatches', 1)))
  return accountant.make_plan(config, num_examples=int(data.num_train()), multiple=multiple)


def _run_seed(workdir: str, config: ml_collections.ConfigDict) -> int:
  """A private run's seed (`accountant.run_seed`): process 0 makes the secret, the others read it after it."""
  if jax.process_index() == 0:
    accountant.run_seed(workdir, config, create=True)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('privacy_secret')
  return accountant.run_seed(workdir, config)


def _sources(config: ml_collections.ConfigDict) -> dict[str, str]:
  """What a private run takes from elsewhere, which its ε does not cover: it must come from public data."""
  out = {}
  if config.get('init_from'):
    out['init_from'] = str(config.init_from)
  if config.task.get('autoencoder'):
    out['task.autoencoder'] = str(config.task.autoencoder)
  if 'tokenizer' in config.data:
    out['tokenizer'] = str(config.data.tokenizer or config.get('init_from') or
                           'trained on this run\'s training split: not covered by ε')
  return out


def _setup(config: ml_collections.ConfigDict, task: Any, data: Any) -> _Setup:
  mesh = sharding.make_mesh(config.mesh)
  plan = privacy_plan(config, task, data, mesh)
  rows = plan.capacity if plan else config.batch_size  # a Poisson batch is padded to a fixed capacity
  sharding.check_batch(rows, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  spec = data.batch_spec(rows)
  if plan:
    spec = {**spec, sampling.WEIGHT_KEY: jax.ShapeDtypeStruct((rows,), jnp.float32)}

  def init_fn(rng):
    param_rng, state_rng = jax.random.split(rng)
    # The state holds plain arrays; the logical axis names the model attached only steer the shardings.
    return train_state.create(nn.meta.unbox(task.init(param_rng, spec)), tx, state_rng)

  key = jax.random.PRNGKey(config.seed)
  boxed = jax.eval_shape(task.init, key, spec)
  logical = nn.get_partition_spec(boxed)
  tx, lr_schedule = optim.make_optimizer(config.optim, config.num_steps, nn.meta.unbox(boxed),
                                         frozen=getattr(task, 'frozen', ()))
  abstract = jax.eval_shape(init_fn, key)
  state_shardings = sharding.state_shardings(abstract, logical, tx, mesh, config.mesh)
  grads_fn = None
  if plan:
    frozen = tuple(config.optim.get('frozen') or ()) + tuple(getattr(task, 'frozen', ()))
    trainable = jax.tree.map(lambda label: label != 'frozen', optim.labels(abstract.params, (), frozen))
    grads_fn = functools.partial(dp_sgd.private_grads, task=task, clip_norm=plan.clip_norm,
                                 noise_multiplier=plan.noise_multiplier, expected_batch=plan.expected_batch,
                                 trainable=trainable, microbatches=int(config.privacy.microbatches))
  step_fn = jax.jit(
      functools.partial(train_step, task=task, tx=tx, lr_schedule=lr_schedule, ema_decay=config.optim.ema_decay,
                        grads_fn=grads_fn),
      in_shardings=(state_shardings, batch_sharding), out_shardings=(state_shardings, None), donate_argnums=0)
  return _Setup(mesh, task, spec, init_fn, abstract, state_shardings, batch_sharding, step_fn, plan)


def compile_report(config: ml_collections.ConfigDict, task: Any, data: Any) -> dict[str, float]:
  """Lowers and compiles the train step for the configured mesh without data or parameters.

  Shows an out-of-memory before hardware is rented: run it on the target machine type, or on a laptop with
  `XLA_FLAGS=--xla_force_host_platform_device_count=N` to see how N devices would split the state.

  Returns:
    Per-device megabytes (arguments, outputs, temporaries, generated code, and their peak estimate), the
    step's GFLOP (XLA's cost analysis), parameter count, and the compile time.
  """
  s = _setup(config, task, data)
  t0 = time.perf_counter()
  compiled = s.step_fn.lower(s.abstract_state,
                             checkpoint.abstract_with_shardings(s.spec, {k: s.batch_sharding for k in s.spec})
                             ).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mb = lambda b: float(b) / 2 ** 20
  report = {
      'devices': float(s.mesh.size),
      'params': float(s.num_params),
      'compile_s': compile_s,
      'gflop_per_step': float(cost.get('flops', 0.0)) / 1e9 if cost else 0.0,
  }
  if mem is not None:
    args, out = mb(mem.argument_size_in_bytes), mb(mem.output_size_in_bytes)
    temp, code = mb(mem.temp_size_in_bytes), mb(mem.generated_code_size_in_bytes)
    alias = mb(mem.alias_size_in_bytes)  # donated state: outputs reuse the argument buffers
    report.update(argument_mb=args, output_mb=out, temp_mb=temp, code_mb=code, alias_mb=alias,
                  peak_mb_per_device=args + out - alias + temp + code)
  return report


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, task: Any, data: Any,
                       evaluators: dict[str, evaluation.Evaluator] | None = None) -> train_state.TrainState:
  """Trains `task` on `data` as `config` says, in `workdir`, resuming from the newest checkpoint there that
  restores, and runs `evaluators` at their intervals; returns the final state.

  `data` gives `batch_spec(batch_size)` and `make_dataset(batch_size=, process_index=, process_count=)` (a
  grain iterator, checkpointed with the state).
  """
  checkpoint.check_workdir(workdir)  # before the compile: a bad --workdir fails in a second
  evaluators = evaluators or {}
  s = _setup(config, task, data)
  batch_sharding, step_fn = s.batch_sharding, s.step_fn
  plan = s.plan
  seed = _run_seed(workdir, config) if plan else int(config.seed)
  # A private run's keys (its noise, its examples' draws) and Poisson draws come from that seed: a secret unless
  # config.privacy.secure is off. Two 32-bit halves: PRNGKey keeps only the low one of a larger int.
  rng = jax.random.fold_in(jax.random.PRNGKey(seed & 0xFFFFFFFF), seed >> 32) if plan else jax.random.PRNGKey(seed)
  # Runs once: XLA's backend optimizations cost more (seconds of LLVM on the threefry bits) than they save.
  init_jit = jax.jit(s.init_fn, out_shardings=s.state_shardings,
                     compiler_options={'xla_backend_optimization_level': 0})

  poisson = {'poisson': sampling.Poisson(plan.rate, plan.capacity, seed)} if plan else {}
  data_iter = iter(data.make_dataset(batch_size=plan.capacity if plan else config.batch_size,
                                     process_index=jax.process_index(), process_count=jax.process_count(),
                                     **poisson))
  mngr = checkpoint.make_manager(workdir, config.checkpoint)
  def fresh():
    state = init_jit(rng)
    params = task.pretrained(state.params)  # weights a task brings from elsewhere (a frozen first stage)
    if params is state.params:
      return state
    put = lambda shardings: jax.device_put(jax.device_get(params), shardings)  # two buffers: both are donated
    return state.replace(params=put(s.state_shardings.params), ema_params=put(s.state_shardings.ema_params))

  with checkpoint.closing_on_error(mngr):
    parts = dict(config.get('init_parts') or {})
    state, how = checkpoint.restore_or_init(mngr, abstract_state=s.abstract_state, data_iter=data_iter,
                                            init_fn=fresh, init_from='' if parts else config.init_from,
                                            new_heads=getattr(task, 'new_heads', ()))
    if how == 'scratch' and parts and config.init_from:
      state, how = warm_start.load_parts(str(config.init_from), state, s.abstract_state, parts), 'init_parts'
    elif how == 'scratch' and parts:
      # A variant made to fine-tune (translate_text.py:runlocal_blocks) run without the run it loads from.
      reporting.log(f'config.init_parts names {", ".join(sorted(parts))}, but config.init_from is empty: every '
                    'parameter starts fresh; add --config.init_from=<the pretrained run> to load them.')
    task.check_params(state.params)
  # Written once the checkpoints are known to fit this config: a mismatched rerun must not overwrite the
  # config.json that `aigc_jax.sample` and `evaluate` rebuild the existing checkpoints' model from.
  if plan:  # the guarantee the run was planned to give, beside the config it came from
    record = {**plan.record(), 'taken_from_elsewhere': _sources(config)}
    if not plan.secure:
      record['seed'] = int(config.seed)
    accountant.check_resume(record, accountant.read_record(workdir) if int(state.step) else None)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))
    if plan:
      with open(os.path.join(workdir, accountant.RECORD), 'w') as f:
        json.dump(record, f, indent=1)
  start_step = int(state.step)
  reporting.log(f'{how} at step {start_step}; {s.num_params:,} parameters; mesh {dict(s.mesh.shape)}; '
                  f'{jax.device_count()} {jax.devices()[0].platform} devices, {jax.process_count()} processes.')
  if plan:
    reporting.log(plan.summary())

  eval_ctx = evaluation.Context(batch_sharding)
  all_finite = jax.jit(_all_finite)

  writer = reporting.Writer(workdir)
  progress = reporting.Progress(start_step, config.num_steps, config.batch_size)
  t_start = time.perf_counter()
  last_ckpt = mngr.latest_step()
  history = []
  watcher = preemption.Watcher()
  finished = False
  try:
    for step in range(start_step + 1, config.num_steps + 1):
      batch = sharding.make_global_batch(next(data_iter), batch_sharding)
      state, step_metrics = step_fn(state, batch)
      history.append(step_metrics)
      is_last = step == config.num_steps
      if step == start_step + 1:  # keep compile time out of the throughput figures
        jax.block_until_ready(step_metrics)
        reporting.log(f'first step (compile + run) took {time.perf_counter() - t_start:.1f}s')
        progress = reporting.Progress(step, config.num_steps, config.batch_size)
      if step % config.sync_every == 0:
        jax.block_until_ready(step_metrics)  # bounds the dispatch queue (XLA:CPU collectives deadlock)
      if step % config.log_every == 0 or is_last:
        host = _mean_metrics(history)
        history = []
        reporting.check_finite(host, step, last_ckpt)
        speed = progress.tick(step)
        privacy = {'privacy/epsilon': plan.epsilon(step)} if plan else {}
        writer.scalars(step, {**{f'train/{k}': v for k, v in host.items()}, **privacy,
                              'perf/examples_per_s': speed['examples_per_s'], 'perf/steps_per_s': speed['steps_per_s']})
        reporting.log(reporting.progress_line(step, config.num_steps, host, speed))
      if any(ev.due(step, is_last) for ev in evaluators.values()):
        progress.pause()
        evaluation.run_due(evaluators, state.ema_params, step, is_last, eval_ctx, writer, workdir)
        progress.resume()
      preempted = watcher.reached(step)  # every step, on every process
      if step % config.checkpoint_every == 0 or is_last or preempted:
        if not bool(all_finite(state.params)):
          reporting.check_finite({'params': float('nan')}, step, last_ckpt)
        progress.pause()
        checkpoint.save(mngr, step, state, data_iter)
        progress.resume()
        last_ckpt = step
      if preempted:
        reporting.log(f'Preempted: saved checkpoint {step} and stopping; rerun the same command to resume.')
        break
    writer.flush()
    finished = True
  finally:
    try:
      watcher.close()
      writer.close()
    finally:  # the checkpoint manager's threads and the last save's outcome come first
      checkpoint.close(mngr, failing=not finished)  # raises SaveFailed if the last save failed
  return state


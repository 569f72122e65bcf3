r"""Where the time goes: one training step, the sampler, the data pipeline and a checkpoint save, measured.

  python -m aigc_jax.benchmark --config=configs/ct.py:monai [--steps=10] [--warmup=2] [--sample_images=16]

The options researchers switch are config fields: `--config.model.dtype=bfloat16` (bf16 compute, float32
parameters and optimizer state), `--config.model.remat=True` (recompute each res block in the backward
pass), `--config.model.attention=dot_product` (jax.nn.dot_product_attention; cuDNN on GPU). The state is
always donated to the step and the step never syncs with the host.

`configs/ct.py:monai` is the network of the PyTorch peer (MONAI's DiffusionModelUNet with channels
(64, 128, 128), attention at the two lower levels, one res block, 64-channel heads, 32 groups: 4,634,305
parameters) at batch 16 of 64×64, so the figures compare one to one with `benchmarks/monai_peer.py`
run in the same session. Prints a table, then, last, one JSON line:

  params, batch, img, devices, platform, compile_s, train_s_per_step (median after warm-up, blocking every
  step), train_img_per_s, gflop_per_step (XLA's cost analysis of the compiled step), achieved_gflops,
  peak_gflops (a table of accelerator peaks; on CPU a measured float32 matmul), utilization, sample_s
  (the config's jitted sampler for `sample_images` images, compile excluded; DDIM-50 in the monai variant),
  sample_compile_s, data_examples_per_s (the real grain pipeline alone), ckpt_save_block_s (how long a save
  holds the loop, orbax writing asynchronously; the second save of the process), ckpt_total_s, peak_mem_mb (device peak on GPU/TPU, the
  process's peak RSS on CPU), dp, rows_per_step, expected_batch.

Any config benchmarks privately with `--config.privacy.enabled=True --config.privacy.noise_multiplier=1.0`: the
step is the trainer's DP-SGD step (train.py), fed a Poisson batch padded to the plan's capacity. It then
processes `rows_per_step` rows (357 for an expected 256 of 4,096 at 300 steps), while `batch` and
`train_img_per_s` count the expected batch, the examples a step trains on on average. A classifier (no
sampler) or `--sample_images=0` reports sample_s as NaN. `benchmarks/dp_side_by_side.sh` sets the two
beside each other and beside Opacus.
"""

import json
import os
import resource
import statistics
import sys
import tempfile
import time

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

FLAGS = flags.FLAGS

# Dense peak TFLOP/s per chip by compute dtype (vendor data sheets); CPUs are measured instead.
PEAK_TFLOPS = {
    'H200': {'bfloat16': 989.0, 'float32': 67.0}, 'H100': {'bfloat16': 989.0, 'float32': 67.0},
    'A100': {'bfloat16': 312.0, 'float32': 19.5}, 'L4': {'bfloat16': 121.0, 'float32': 30.3},
    'TPU v4': {'bfloat16': 275.0, 'float32': 275.0 / 4}, 'TPU v5 lite': {'bfloat16': 197.0, 'float32': 197.0 / 4},
    'TPU v5p': {'bfloat16': 459.0, 'float32': 459.0 / 4}, 'TPU v6 lite': {'bfloat16': 918.0, 'float32': 918.0 / 4},
}


def peak_gflops(dtype: str) -> tuple[float, str]:
  """(GFLOP/s, where the figure comes from) for all local devices together."""
  dev = jax.local_devices()[0]
  if dev.platform != 'cpu':
    for name, peaks in PEAK_TFLOPS.items():
      if name.lower() in dev.device_kind.lower():
        return peaks.get(dtype, peaks['float32']) * 1e3 * jax.local_device_count(), f'data sheet ({name})'
    return float('nan'), f'unknown device kind {dev.device_kind!r}'
  n = 1024
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / min(times) / 1e9, f'measured float32 {n}x{n} matmul'


def peak_mem_mb() -> float:
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run(config, *, steps: int = 10, warmup: int = 2, sample_images: int = 16, data_batches: int = 20) -> dict:
  """Every figure of the module doc for `config` (a training config)."""
  from aigc_jax import registry  # pylint: disable=g-import-not-at-top
  from aigc_jax.core import checkpoint, sharding, train  # pylint: disable=g-import-not-at-top
  from aigc_jax.core.privacy import sampling  # pylint: disable=g-import-not-at-top
  from aigc_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  s = train._setup(config, registry.build_task(config), registry.build_data(config))  # pylint: disable=protected-access
  batch_specs = {k: s.batch_sharding for k in s.spec}
  t0 = time.perf_counter()
  compiled = s.step_fn.lower(s.abstract_state, checkpoint.abstract_with_shardings(s.spec, batch_specs)).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  gflop = float(cost.get('flops', 0.0)) / 1e9 if cost else float('nan')

  init = jax.jit(s.init_fn, out_shardings=s.state_shardings,  # runs once: see train.py
                 compiler_options={'xla_backend_optimization_level': 0})
  state = init(jax.random.PRNGKey(config.seed))
  # A private config's step compiles for the plan's padded capacity and wants the Poisson batch's weights:
  # its data is served as the trainer serves it (train.py).
  rows = s.plan.capacity if s.plan else config.batch_size
  poisson = {'poisson': sampling.Poisson(s.plan.rate, s.plan.capacity, config.seed)} if s.plan else {}
  it = iter(pipeline.make_dataset(config.data, batch_size=rows, process_index=0, process_count=1, **poisson))
  batch = sharding.make_global_batch(next(it), s.batch_sharding)  # one real batch: the step alone is timed
  state, step_s = _timed_steps(compiled, state, batch, steps, warmup)

  sample_s = sample_compile_s = float('nan')  # a classifier draws no images; sample_images=0 skips it
  if sample_images and callable(getattr(s.task, 'sample', None)):
    shape = (sample_images,) + tuple(s.spec['image'].shape[1:])
    sample = jax.jit(lambda p, k: s.task.sample(p, k, shape))
    t0 = time.perf_counter()
    sample_fn = sample.lower(state.ema_params, jax.random.PRNGKey(0)).compile()
    sample_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(sample_fn(state.ema_params, jax.random.PRNGKey(1)))
    sample_s = time.perf_counter() - t0

  data_rate = pipeline.throughput(config.data, batch_size=config.batch_size, num_batches=data_batches)

  with tempfile.TemporaryDirectory() as tmp:
    mngr = checkpoint.make_manager(tmp, config.checkpoint)
    for save_step in (1, 2):  # the first save of a process also starts orbax's writers: time the second
      t0 = time.perf_counter()
      checkpoint.save(mngr, save_step, state, it)
      block_s = time.perf_counter() - t0
      mngr.wait_until_finished()
      total_s = time.perf_counter() - t0
    mngr.close()

  peak, peak_src = peak_gflops(config.model.get('dtype', 'float32'))
  achieved = gflop / step_s
  return {
      'params': s.num_params, 'batch': config.batch_size, 'img': config.data.image_size,
      'devices': jax.device_count(), 'platform': jax.devices()[0].platform,
      'compute_dtype': config.model.get('dtype', 'float32'), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'remat': bool(config.model.get('remat', False)), 'attention': config.model.get('attention', '-'),
      'host_allocator': runtime.host_allocator(),
      'compile_s': compile_s, 'train_s_per_step': step_s, 'train_img_per_s': config.batch_size / step_s,
      'gflop_per_step': gflop, 'achieved_gflops': achieved, 'peak_gflops': peak, 'peak_source': peak_src,
      'utilization': achieved / peak if peak == peak else float('nan'),
      'sample_s': sample_s, 'sample_compile_s': sample_compile_s, 'sample_images': sample_images,
      'sampler': (f'{config.task.sampler}-{config.task.sample_steps}' if 'sampler' in config.task
                  else config.task.name),  # a GAN or VAE samples in one pass
      'data_examples_per_s': data_rate, 'ckpt_save_block_s': block_s, 'ckpt_total_s': total_s,
      'peak_mem_mb': peak_mem_mb(),
      'dp': s.plan is not None, 'rows_per_step': rows, 'expected_batch': config.batch_size,
  }


def _timed_steps(compiled, state, batch, steps: int, warmup: int):
  """(state, median seconds per step after `warmup` untimed steps, last metrics), blocking every step."""
  times = []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    state, m = compiled(state, batch)
    jax.block_until_ready((state, m))
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  if not np.isfinite(float(m['loss'])):
    raise FloatingPointError('The benchmarked step produced a non-finite loss; check the config.')
  return state, statistics.median(times)


def run_language_model(config, *, steps: int = 10, warmup: int = 2, gen_batch: int = 8, prompt_tokens: int = 16
                       ) -> dict:
  """The language-model figures (configs/lm_gpt.py, lm_bert.py): training tokens/s of the jitted step on
  random token rows of the config's shape (token values do not change the work; the peer, benchmarks/hf_peer.py,
  uses the same), and for a causal model KV-cached greedy generation of `gen_batch` rows from a
  `prompt_tokens` prompt to the full `seq_len`, in new tokens/s (compile excluded)."""
  from aigc_jax.core import checkpoint, sharding, train  # pylint: disable=g-import-not-at-top
  from aigc_jax import registry  # pylint: disable=g-import-not-at-top
  from aigc_jax.models import decoding  # pylint: disable=g-import-not-at-top
  task = registry.build_task(config)
  spec = {k: jax.ShapeDtypeStruct((config.batch_size, config.data.seq_len), jnp.int32)
          for k in ('tokens', 'segment_ids', 'positions')}
  s = train._setup(config, task, _SpecOnly(spec))  # pylint: disable=protected-access
  t0 = time.perf_counter()
  compiled = s.step_fn.lower(s.abstract_state, checkpoint.abstract_with_shardings(
      s.spec, {k: s.batch_sharding for k in s.spec})).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  gflop = float(cost.get('flops', 0.0)) / 1e9 if cost else float('nan')
  state = jax.jit(s.init_fn, out_shardings=s.state_shardings)(jax.random.PRNGKey(config.seed))
  b, length = config.batch_size, config.data.seq_len
  rng = np.random.default_rng(0)
  host = {'tokens': rng.integers(4, config.data.vocab_size, (b, length)).astype(np.int32),
          'segment_ids': np.ones((b, length), np.int32),
          'positions': np.broadcast_to(np.arange(length, dtype=np.int32), (b, length)).copy()}
  batch = sharding.make_global_batch(host, s.batch_sharding)
  state, step_s = _timed_steps(compiled, state, batch, steps, warmup)
  out = {'params': s.num_params, 'batch': b, 'seq_len': length, 'vocab': config.data.vocab_size,
         'devices': jax.device_count(), 'platform': jax.devices()[0].platform,
         'compute_dtype': config.model.dtype, 'remat': bool(config.model.remat), 'attention': config.model.attention,
         'objective': config.task.objective, 'compile_s': compile_s, 'train_s_per_step': step_s,
         'train_tokens_per_s': b * length / step_s, 'gflop_per_step': gflop, 'achieved_gflops': gflop / step_s,
         'peak_gflops': peak_gflops(config.model.dtype)[0]}
  if config.model.causal:
    new = length - prompt_tokens
    prompt = jnp.asarray(host['tokens'][:gen_batch, :prompt_tokens])
    gen = jax.jit(lambda p, x, k: decoding.generate(task.model, p, x, k, num_new=new, temperature=0.0))
    t0 = time.perf_counter()
    gen_fn = gen.lower(state.params, prompt, jax.random.PRNGKey(0)).compile()
    out['generate_compile_s'] = time.perf_counter() - t0
    jax.block_until_ready(gen_fn(state.params, prompt, jax.random.PRNGKey(0)))   # warm
    times = []
    for i in range(3):
      t0 = time.perf_counter()
      jax.block_until_ready(gen_fn(state.params, prompt, jax.random.PRNGKey(i)))
      times.append(time.perf_counter() - t0)
    out.update(gen_batch=gen_batch, gen_new_tokens=new, generate_s=statistics.median(times),
               generate_tokens_per_s=gen_batch * new / statistics.median(times))
  out['peak_mem_mb'] = peak_mem_mb()
  return out


class _SpecOnly:
  """A data source that only states its batch shapes (the language-model benchmark feeds its own rows)."""

  def __init__(self, spec):
    self.spec = spec

  def batch_spec(self, batch_size: int):
    del batch_size
    return self.spec


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/ct.py:monai')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from aigc_jax.core import reporting  # pylint: disable=g-import-not-at-top
  reporting.quiet_library_logs()
  if FLAGS.config.data.name == 'text':
    r = run_language_model(FLAGS.config, steps=FLAGS.steps, warmup=FLAGS.warmup)
    for k, v in r.items():
      print(f'{k:>32s}  {v:,.4g}' if isinstance(v, float) else f'{k:>32s}  {v}')
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
    return
  r = run(FLAGS.config, steps=FLAGS.steps, warmup=FLAGS.warmup, sample_images=FLAGS.sample_images)
  rows = [('parameters', f'{r["params"]:,}'), ('batch × image', f'{r["batch"]} × {r["img"]}²'),
          ('DP-SGD', f'Poisson batches padded to {r["rows_per_step"]} rows' if r['dp'] else 'off'),
          ('devices', f'{r["devices"]} {r["platform"]} ({r["compute_dtype"]})'),
          ('options', f'remat={r["remat"]}, attention={r["attention"]}, state donated'),
          ('host allocator', r['host_allocator']),
          ('compile', f'{r["compile_s"]:.1f} s'),
          ('train step (median)', f'{r["train_s_per_step"] * 1e3:.0f} ms = {r["train_img_per_s"]:.2f} img/s'),
          ('GFLOP per step (XLA)', f'{r["gflop_per_step"]:.1f}'),
          ('achieved / peak', f'{r["achieved_gflops"]:.1f} / {r["peak_gflops"]:.1f} GFLOP/s = '
                              f'{r["utilization"]:.1%} ({r["peak_source"]})'),
          (f'sampling {r["sample_images"]} images ({r["sampler"]})',
           f'{r["sample_s"]:.2f} s (+ {r["sample_compile_s"]:.1f} s compile)' if r['sample_s'] == r['sample_s']
           else 'not run'),
          ('data pipeline alone', f'{r["data_examples_per_s"]:,.0f} examples/s '
                                  f'({r["data_examples_per_s"] / r["train_img_per_s"]:.1f}x what training uses)'),
          ('checkpoint save', f'{r["ckpt_save_block_s"]:.2f} s blocking, {r["ckpt_total_s"]:.2f} s in all'),
          ('peak memory', f'{r["peak_mem_mb"]:,.0f} MB')]
  for k, v in rows:
    print(f'{k:>32s}  {v}')
  print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, 'Training config (with a variant: configs/ct.py:monai).',
                                  lock_config=True)
  flags.DEFINE_integer('steps', 10, 'Timed training steps after the warm-up.')
  flags.DEFINE_integer('warmup', 2, 'Untimed training steps first.')
  flags.DEFINE_integer('sample_images', 16, 'Images in the timed sampling call.')
  app.run(main)

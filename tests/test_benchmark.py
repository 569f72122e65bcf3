"""The performance benchmark: every figure it promises, on the tiny config; the peer-matching variant's size."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import benchmark
from aigc_jax import models
from configs import ct
from tiny_config import tiny_config

KEYS = {'params', 'batch', 'img', 'compile_s', 'train_s_per_step', 'train_img_per_s', 'gflop_per_step',
        'achieved_gflops', 'peak_gflops', 'utilization', 'sample_s', 'data_examples_per_s',
        'ckpt_save_block_s', 'peak_mem_mb'}


def test_benchmark_reports_every_figure():
  r = benchmark.run(tiny_config(**{'mesh.num_devices': 1}), steps=2, warmup=1, sample_images=8, data_batches=2)
  assert KEYS <= set(r)
  for k in KEYS:
    assert np.isfinite(r[k]) and r[k] > 0, k
  assert r['batch'] == 8 and r['img'] == 16
  np.testing.assert_allclose(r['train_img_per_s'], 8 / r['train_s_per_step'])
  np.testing.assert_allclose(r['utilization'], r['gflop_per_step'] / r['train_s_per_step'] / r['peak_gflops'])


def test_monai_variant_has_the_peer_networks_parameter_count():
  c = ct.get_config('monai')
  assert (c.batch_size, c.data.image_size, c.task.sample_steps) == (16, 64, 50)
  m = models.build(c.model)
  shapes = nn.meta.unbox(jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)),
                                        jnp.zeros((1,), jnp.int32)))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 4_634_305  # MONAI's DiffusionModelUNet


def test_language_model_benchmark_reports_tokens_per_second_and_matches_the_peers_size():
  from configs import lm_gpt  # pylint: disable=g-import-not-at-top
  c = lm_gpt.get_config('test')
  c.mesh.num_devices = 1
  r = benchmark.run_language_model(c, steps=2, warmup=1, gen_batch=2, prompt_tokens=8)
  for k in ('compile_s', 'train_s_per_step', 'train_tokens_per_s', 'generate_s', 'generate_tokens_per_s',
            'peak_mem_mb'):
    assert np.isfinite(r[k]) and r[k] > 0, k
  np.testing.assert_allclose(r['train_tokens_per_s'], c.batch_size * c.data.seq_len / r['train_s_per_step'])
  assert r['gen_new_tokens'] == c.data.seq_len - 8
  # benchmarks/hf_peer.py builds transformers' GPT-2 at the runlocal shapes: 4,240,896 parameters there.
  m = models.build(lm_gpt.get_config('runlocal').model)
  shapes = nn.meta.unbox(jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 128), jnp.int32)))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 4_240_896


def test_private_config_benchmarks_the_dp_step_on_its_padded_capacity():
  from aigc_jax.core.privacy import accountant  # pylint: disable=g-import-not-at-top
  from configs import ct_classify  # pylint: disable=g-import-not-at-top
  c = ct_classify.get_config('test')
  c.mesh.num_devices = 1
  c.privacy.enabled, c.privacy.noise_multiplier = True, 1.0
  r = benchmark.run(c, steps=2, warmup=1, sample_images=8, data_batches=2)
  # The trainer's plan: Poisson q = 8 / 64 over 4 steps at δ = 1e-5, padded to this many rows.
  assert r['dp'] and r['expected_batch'] == r['batch'] == 8
  assert r['rows_per_step'] == accountant.capacity(64, 8 / 64, 1, 4, 1e-5) > 8
  assert np.isfinite(r['train_s_per_step']) and r['train_s_per_step'] > 0
  assert np.isnan(r['sample_s'])  # a classifier has no sampler


def test_ct_classify_runlocal_has_the_opacus_peers_parameter_count():
  from configs import ct_classify  # pylint: disable=g-import-not-at-top
  m = models.build(ct_classify.get_config('runlocal').model)
  shapes = nn.meta.unbox(jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1))))
  # benchmarks/opacus_peer.py asserts its PyTorch FeatureNet has the same OURS_PARAMS.
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 73_316

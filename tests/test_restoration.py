"""Low-dose CT restoration on the one trainer: models, task, and the evaluation beside the low-dose input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import evaluate
from aigc_jax import models
from aigc_jax import tasks
from aigc_jax import train
from configs import ct_denoise


def test_restoration_models_map_images_to_images():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
  red = models.build(ct_denoise.get_config('test').model)
  params = red.init(jax.random.PRNGKey(1), x)
  assert red.apply(params, x).shape == x.shape
  # RED-CNN adds its input back: with the decoder zeroed it is exactly the identity.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if 'ConvTranspose' in jax.tree_util.keystr(p) else v, params)
  np.testing.assert_allclose(red.apply(zeroed, x), x, atol=1e-6)
  cfg = ct_denoise.get_config('test').model
  cfg.name = 'conv_autoencoder'
  with pytest.raises(ValueError, match='does not take'):
    models.build(cfg)  # RED-CNN's fields do not fit the autoencoder: named, not ignored
  ae = models.MODELS['conv_autoencoder'](channels=(8, 16), output='sigmoid')
  out = ae.apply(ae.init(jax.random.PRNGKey(2), x), x)
  assert out.shape == x.shape and float(jnp.max(jnp.abs(out))) <= 1.0


def test_denoiser_trains_on_dose_pairs_and_is_evaluated_beside_the_input(tmp_path):
  c = ct_denoise.get_config('test')
  c.log_every = 1
  train.train_and_evaluate(c, str(tmp_path))
  report = evaluate.evaluate_restoration(str(tmp_path), num=8)
  for name in ('low_dose_input', 'restored'):
    assert set(report[name]) == {'psnr_db', 'ssim', 'rmse_hu'}
    assert report[name]['psnr_db']['ci95'][0] <= report[name]['psnr_db']['mean'] <= report[name]['psnr_db']['ci95'][1]
  assert np.isfinite(report['psnr_gain_db']) and report['step'] == 4
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert any('eval/psnr_db' in r and 'eval/psnr_input_db' in r for r in rows)  # scored at each sample step
  with pytest.raises(ValueError, match='pairs'):
    bad = ct_denoise.get_config('test')
    bad.data.pairs = False
    tasks.build(bad)

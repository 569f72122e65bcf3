"""The registry's contract: every registered task inits, steps, lowers its loss on a tiny fixed batch, and
checkpoints and resumes through the one trainer's pieces; every name a config can give is one of them."""

import jax
import numpy as np
import pytest

from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.core import checkpoint
from aigc_jax.core import sharding
from aigc_jax.core import train
from configs import ct
from configs import ct_denoise
from configs import ct_features
from configs import ct_gan
from configs import ct_ldm
from configs import ct_vae
from configs import lm_gpt
from configs import risk
from configs import text_coding

RECIPES = {'diffusion': ct, 'restoration': ct_denoise, 'gan': ct_gan, 'vae': ct_vae, 'latent_diffusion': ct_ldm,
           'classification': ct_features, 'language_model': lm_gpt, 'text_classification': text_coding,
           'risk': risk}
STEPS = 30


def test_every_registered_task_has_a_recipe_here():
  assert set(registry.TASKS) == set(RECIPES), 'add the new task\'s recipe to RECIPES in this test'


@pytest.fixture(scope='module')
def autoencoder_run(tmp_path_factory):
  """A trained test-size VAE for latent diffusion to freeze."""
  work = tmp_path_factory.mktemp('vae')
  c = ct_vae.get_config('test')
  c.mesh.num_devices = 1
  experiment.train_and_evaluate(c, str(work))
  return str(work)


def _config(name, autoencoder_run):
  c = RECIPES[name].get_config('test')
  c.mesh.num_devices = 1           # the contract, not the sharding (tests/test_sharding.py)
  c.num_steps, c.optim.warmup_steps = STEPS, 0
  c.optim.learning_rate = 3e-3
  c.optim.ema_decay = 0.0
  if name == 'latent_diffusion':
    c.task.autoencoder = autoencoder_run
  return c


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_task_steps_lowers_its_loss_and_resumes(name, autoencoder_run, tmp_path):
  config = _config(name, autoencoder_run)
  task, data = registry.build_task(config), registry.build_data(config)
  s = train._setup(config, task, data)  # pylint: disable=protected-access
  state = jax.jit(s.init_fn, out_shardings=s.state_shardings)(jax.random.PRNGKey(0))
  state = state.replace(params=jax.device_put(task.pretrained(state.params), s.state_shardings.params))
  it = iter(data.make_dataset(batch_size=config.batch_size, process_index=0, process_count=1))
  batch = sharding.make_global_batch(next(it), s.batch_sharding)  # one fixed batch: it can be fitted
  losses = []
  for _ in range(STEPS):
    state, m = s.step_fn(state, batch)
    losses.append(float(m['loss']))
  assert np.all(np.isfinite(losses)), losses
  if name != 'gan':  # a GAN's summed losses are a game's, not a descent
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses

  mngr = checkpoint.make_manager(str(tmp_path), config.checkpoint)
  checkpoint.save(mngr, STEPS, state, it)
  checkpoint.close(mngr)
  mngr = checkpoint.make_manager(str(tmp_path), config.checkpoint)
  fresh = iter(data.make_dataset(batch_size=config.batch_size, process_index=0, process_count=1))
  restored, how = checkpoint.restore_or_init(mngr, abstract_state=s.abstract_state, data_iter=fresh,
                                             init_fn=lambda: None, init_from='')
  checkpoint.close(mngr)
  assert how == 'resumed' and int(restored.step) == STEPS
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))
  nxt = next(fresh)  # the data iterator resumed where it stood: the batch after the fixed one
  jax.tree.map(np.testing.assert_array_equal, nxt, next(it))


def test_an_evaluator_the_task_cannot_serve_is_refused_by_name():
  """A sample grid asked of a classifier fails when the run is built, naming the evaluator and the method."""
  config = ct_features.get_config('test')
  config.evals.grid = {'type': 'ct_samples', 'every': 4}
  task = registry.build_task(config)
  with pytest.raises(ValueError, match=r"config.evals.grid .*'ct_samples'.* sample\(\).*'classification'"):
    registry.build_evaluators(config, task)

"""Every variant of every recipe in configs/ builds, and names only registered tasks, models, data sources and
evaluators: a recipe the README shows must not fail at its first line (as lm_bert.py:runlocal once did)."""

import importlib
import os
import re

import pytest

from aigc_jax import models
from aigc_jax import registry

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs')
RECIPES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                 if f.endswith('.py') and f not in ('__init__.py', 'common.py'))


def variants(module) -> list[str]:
  """The variants a recipe names in its refusal of an unknown one (so the test follows each file)."""
  with pytest.raises(ValueError, match='unknown variant') as e:
    module.get_config('no_such_variant')
  listed = re.search(r'use(?: one of)?: ([^(]*)', str(e.value)).group(1)
  return [''] + [v.strip() for v in listed.split(',') if v.strip()]


@pytest.mark.parametrize('name', RECIPES)
def test_every_variant_builds_with_registered_names(name):
  module = importlib.import_module(f'configs.{name}')
  found = variants(module)
  assert len(found) >= 2, f'{name}: no variant found in its refusal message'
  for arg in found:
    c = module.get_config(arg)
    where = f'configs/{name}.py:{arg}'
    assert c.task.name in registry.TASKS, where
    assert c.model.name in models.MODELS, where
    assert c.data.name.split(':', 1)[0] in registry.DATA_SOURCES, where
    for key, ev in (c.get('evals') or {}).items():
      assert ev.type in registry.EVALUATORS, f'{where}: evals.{key}'
    assert c.num_steps > 0 and c.batch_size > 0, where

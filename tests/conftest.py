"""Fake 8-device CPU platform for every test; must run before anything imports jax."""

import atexit
import os
import shutil
import sys
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
                           ' --xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# XLA:CPU compile time dominates this suite, and many tests compile the same tiny model on the same mesh
# (also in the subprocesses they start, which inherit this variable). JAX's persistent compilation cache
# makes the second compile of an identical program a file read. One fresh cache per test session, so a
# run never depends on what an earlier one left behind.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='aigc_jax_xla_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)  # `configs` and `aigc_jax` import from the repo root

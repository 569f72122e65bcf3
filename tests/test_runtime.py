"""Process defaults: the XLA flag default and the huge-page re-execution of the commands."""

import os
import subprocess
import sys

from aigc_jax.core import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Prints the tunables the process ended up with and how many times it started.
SCRIPT = ('import os, sys; print("start", flush=True); from aigc_jax.core import runtime; runtime.apply("__main__"); '
          'print(os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])')


def _run(**env):
  base = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', 'AIGC_JAX_MALLOC')}
  out = subprocess.run([sys.executable, '-c', SCRIPT, 'arg'], env={**base, 'PYTHONPATH': ROOT, **env},
                       capture_output=True, text=True, check=True).stdout
  return out.count('start'), out.strip().splitlines()[-1]


def test_commands_restart_once_with_huge_pages_on_cpu():
  if runtime.platform.system() != 'Linux' or runtime.platform.libc_ver()[0] != 'glibc':
    assert _run(JAX_PLATFORMS='cpu') == (1, "None ['arg']")
    return
  # Re-executed exactly once, with the same arguments and the tunable set.
  assert _run(JAX_PLATFORMS='cpu') == (2, f"{runtime.HUGE_PAGES} ['arg']")
  # Opt-outs: the user's switch, their own tunables, an accelerator.
  assert _run(JAX_PLATFORMS='cpu', AIGC_JAX_MALLOC='default') == (1, "None ['arg']")
  assert _run(JAX_PLATFORMS='cpu', GLIBC_TUNABLES='glibc.malloc.arena_max=2') == (
      1, "glibc.malloc.arena_max=2 ['arg']")
  assert _run(JAX_PLATFORMS='cuda') == (1, "None ['arg']")


def test_xla_flag_default_yields_to_the_users_choice(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--foo')
  assert runtime.xla_flag_default() == f'--foo {runtime.YNN}=individual_dot,reduce'
  monkeypatch.setenv('XLA_FLAGS', f'{runtime.YNN}=')
  assert runtime.xla_flag_default() == f'{runtime.YNN}='


LIBRARY_USE = ('import os; before = dict(os.environ); '
               'import aigc_jax.main, aigc_jax.sample, aigc_jax.evaluate, aigc_jax.denoise, aigc_jax.train_features, '
               'aigc_jax.benchmark, aigc_jax.tasks, aigc_jax.prepare, aigc_jax.registry, aigc_jax.experiment; '
               'print([os.environ.get(k) for k in ("XLA_FLAGS", "GLIBC_TUNABLES")])')


def test_importing_any_module_leaves_the_process_environment_alone():
  """Only a command run as the program sets process defaults; a fork's script or notebook that imports our
  modules keeps its own XLA flags and allocator."""
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'GLIBC_TUNABLES')}
  out = subprocess.run([sys.executable, '-c', LIBRARY_USE], env={**env, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'},
                       capture_output=True, text=True, check=True).stdout
  assert out.strip().splitlines()[-1] == '[None, None]'  # (libraries' own variables, e.g. TF_CPP_*, aside)


def test_known_failures_end_a_command_with_one_message_and_status_1(caplog):
  import pytest  # pylint: disable=g-import-not-at-top
  from aigc_jax.core import checkpoint  # pylint: disable=g-import-not-at-top

  def broken(argv):
    raise checkpoint.CheckpointError('no checkpoint of runs/x restores: step 4 (data corrupt)')

  with pytest.raises(SystemExit) as stop:
    runtime.exits_cleanly(broken)(['prog'])
  assert stop.value.code == 1 and 'step 4 (data corrupt)' in caplog.text
  with pytest.raises(KeyError):  # anything else is a bug: its traceback stays
    runtime.exits_cleanly(lambda argv: {}['x'])(['prog'])

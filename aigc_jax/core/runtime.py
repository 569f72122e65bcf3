"""Process-wide defaults for computing on the CPU, measured on the benchmark's network (README "Performance").

* XLA flags (`xla_flag_default()`, through `apply(__name__)` in each command, before jax is imported). XLA:CPU's YNNPACK convolutions are slow on these CPUs;
  keeping YNNPACK for dots and reductions only trains ~1.5x faster (STACK.md). A user's own XLA_FLAGS
  choice for the same flag wins.
* Huge pages for the host allocator (`use_huge_pages()`, through `apply(__name__)` in each command).
  XLA:CPU mallocs each step's temporaries (gigabytes for a U-Net step) and frees them at the end; glibc
  mmaps blocks that large and unmaps them on free, so every step faults ~1 million fresh 4 KiB pages in:
  a third of configs/ct.py:monai's step time. glibc's `hugetlb=1` tunable backs them with transparent
  2 MiB pages (~7,500 faults a step, the same peak memory). Keeping the memory instead (mallopt: one
  arena, no mmap, no trim) faulted nothing but grew the heap by the size of the temporaries every few
  steps. glibc reads tunables only at start-up, so the command re-executes itself once with
  GLIBC_TUNABLES set. `AIGC_JAX_MALLOC=default` (or a GLIBC_TUNABLES of your own) turns this off.
"""

import glob
import os
import platform
import sys

YNN = '--xla_cpu_experimental_ynn_fusion_type'
HUGE_PAGES = 'glibc.malloc.hugetlb=1'


def apply(module_name: str) -> None:
  """A command's process defaults: `runtime.apply(__name__)` at the top of every command, before jax is
  imported. Only when the module runs as the program (`module_name == '__main__'`): the XLA flag default,
  then one re-execution with huge pages (`use_huge_pages`). Imported as a library (tests, notebooks, another
  command), a command module leaves the process as it found it."""
  if module_name == '__main__':
    xla_flag_default()
    use_huge_pages()


def xla_flag_default() -> str:
  """Adds the YNNPACK fusion default to XLA_FLAGS unless the user chose that flag; returns XLA_FLAGS."""
  if YNN not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {YNN}=individual_dot,reduce').strip()
  return os.environ['XLA_FLAGS']


def _computes_on_cpu() -> bool:
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  # No explicit choice: jax picks an accelerator when one is present.
  return not (glob.glob('/dev/nvidia[0-9]*') or glob.glob('/dev/accel[0-9]*') or glob.glob('/dev/vfio/[0-9]*'))


def host_allocator() -> str:
  """What the host allocator of this process runs with, for reports."""
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  return f'GLIBC_TUNABLES={tunables}' if tunables else 'glibc defaults'


def use_huge_pages() -> None:
  """Re-executes this command once with glibc's huge-page tunable, when it computes on a Linux CPU."""
  if (os.environ.get('AIGC_JAX_MALLOC') == 'default' or 'GLIBC_TUNABLES' in os.environ
      or not sys.executable or platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
      or not _computes_on_cpu()):
    return
  os.environ['GLIBC_TUNABLES'] = HUGE_PAGES
  sys.stdout.flush()
  sys.stderr.flush()
  # orig_argv keeps the interpreter's own options (-m module, -X, -u) as the user typed them.
  os.execv(sys.executable, sys.orig_argv)


def exits_cleanly(main):
  """A command's `main` whose known failures (a checkpoint that cannot be restored or saved, a non-finite
  loss) end the process with their one-line message and status 1: the message says what happened and what
  to do, and a traceback (plus orbax's background threads' own) would bury it."""
  def wrapped(argv):
    from absl import logging  # pylint: disable=g-import-not-at-top
    from aigc_jax.core import checkpoint, reporting  # pylint: disable=g-import-not-at-top  # after the flags above
    try:
      return main(argv)
    except (checkpoint.CheckpointError, reporting.NonFiniteLossError) as e:
      logging.error('%s', e)
      sys.exit(1)
  return wrapped

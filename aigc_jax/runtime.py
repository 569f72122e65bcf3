"""Process-wide defaults for computing on the CPU, measured on the benchmark's network (README "Performance").

* XLA flags (`apply()`, before jax is imported). XLA:CPU's YNNPACK convolutions are slow on these CPUs;
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


def apply(module_name: str = '') -> str:
  """Sets the XLA flag default and returns XLA_FLAGS; a command (`module_name == '__main__'`) also
  re-executes itself once with huge pages (`use_huge_pages`). Call before jax is imported."""
  if YNN not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {YNN}=individual_dot,reduce').strip()
  if module_name == '__main__':
    use_huge_pages()
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

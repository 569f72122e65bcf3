"""XLA flags that are defaults of this codebase; `apply()` must run before jax is imported.

XLA:CPU's YNNPACK convolutions are slow on these CPUs; keeping YNNPACK for dots and reductions only trains
~1.5x faster (STACK.md). A user's own XLA_FLAGS choice for the same flag wins.
"""

import os

YNN = '--xla_cpu_experimental_ynn_fusion_type'


def apply() -> None:
  if YNN not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {YNN}=individual_dot,reduce').strip()

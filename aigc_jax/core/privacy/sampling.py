"""The sampling DP-SGD's accountant assumes: Poisson subsampling, drawn per step from an explicit seed.

The data sources serve it (`data/serving.py`); the trainer makes the plan (`core/privacy/accountant.py`).
"""

import dataclasses

import numpy as np

WEIGHT_KEY = 'example_weight'  # Poisson batches: 1.0 for a drawn example, 0.0 for a padding row


@dataclasses.dataclass(frozen=True)
class Poisson:
  """Poisson subsampling: each step draws every one of the `n` examples independently with probability
  `rate`, pads the draw to `capacity` rows. A draw larger than `capacity` keeps a random `capacity` of it; the
  accountant (`privacy.accountant.overflow_probability`) adds the chance of that ever happening to δ."""
  rate: float
  capacity: int
  seed: int

  def draw(self, step: int, n: int) -> np.ndarray:
    """Indices of the examples step `step` includes, in random order, at most `capacity` of them."""
    rng = np.random.default_rng([self.seed, step])
    picked = np.flatnonzero(rng.random(n) < self.rate)
    if len(picked) > self.capacity:
      picked = rng.choice(picked, self.capacity, replace=False)
    return rng.permutation(picked)

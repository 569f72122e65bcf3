"""What a differentially private run promises: its sampling plan and its (ε, δ), by Google's `dp_accounting`.

  config.privacy.enabled = True
  config.privacy.clip_norm = 1.0          # C: each example's gradient is scaled to norm ≤ C
  config.privacy.noise_multiplier = 1.0   # σ: Gaussian noise of std σC on the summed gradient, once per step
  config.privacy.target_epsilon = 0.0     # > 0 (with noise_multiplier 0): σ is computed to reach it at num_steps
  config.privacy.delta = 1e-5             # δ; must be below 1 / (training examples)
  config.privacy.accountant = 'rdp'       # 'rdp' (Rényi DP, Mironov 2017) or 'pld' (privacy loss distributions)
  config.privacy.epsilon_budget = 0.0     # > 0: refuse a run whose planned steps would spend more ε
  config.privacy.microbatches = 1         # per-example gradients in this many sequential chunks (memory)
  config.privacy.secure = True            # the noise and the draws from a secret seed (privacy_secret), not
                                          # config.seed: DP assumes an adversary cannot recompute them

The unit of privacy is one training example as the data source serves it: a CT slice, a packed text row, a
patient row of a cohort. Several slices of one patient are several examples; a per-patient guarantee is
only group privacy (k slices: roughly kε). The guarantee covers what is computed from the noisy gradients —
parameters, checkpoints' params, exports — not the training-batch metrics logged beside them (loss, accuracy,
the drawn batch's size: computed on private examples without noise), nor what the run takes from elsewhere
(`init_from` weights, a frozen autoencoder, a tokenizer or feature encoder fitted on the training split), which
must come from public data; privacy.json records those sources.

The mechanism accounted is the Poisson-subsampled Gaussian mechanism composed over the steps: each step
includes every training example independently with probability q = batch_size / N (`data/serving.Poisson`),
so `config.batch_size` is the *expected* batch. The step compiles for a fixed `capacity` rows, padded and
masked: the fewest (rounded up to the data-parallel devices) that any of the run's draws exceeds with
probability at most 1% of δ. A draw above the capacity keeps a random `capacity` of its examples; the guarantee
then is (ε, δ + `overflow_probability`), which `Plan.summary` and privacy.json state.
"""

import dataclasses
import json
import math
import os

from absl import logging as absl_logging
import dp_accounting
from dp_accounting import pld
from dp_accounting import rdp
import ml_collections
from scipy import stats

ACCOUNTANTS = ('rdp', 'pld')
OVERFLOW_SHARE = 0.01  # the capacity is exceeded (in any step) with probability at most this share of δ


def _event(rate: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)


def _accountant(kind: str):
  if kind == 'rdp':
    return rdp.RdpAccountant()
  if kind == 'pld':
    return pld.PLDAccountant()
  raise ValueError(f'config.privacy.accountant={kind!r}: choose one of {ACCOUNTANTS}.')


def epsilon(rate: float, noise_multiplier: float, steps: int, delta: float, kind: str = 'rdp') -> float:
  """ε at `delta` after `steps` Poisson-subsampled (probability `rate`) Gaussian steps of noise σ."""
  if steps <= 0:
    return 0.0
  if noise_multiplier <= 0:
    return math.inf
  acc = _accountant(kind)
  verbosity = absl_logging.get_verbosity()
  # dp_accounting warns, at every call, of low Rényi orders it leaves out of the minimum: noise in a run's log.
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    acc.compose(_event(rate, noise_multiplier, steps))
    return float(acc.get_epsilon(delta))
  finally:
    absl_logging.set_verbosity(verbosity)


def noise_for_epsilon(target: float, rate: float, steps: int, delta: float, kind: str = 'rdp') -> float:
  """The smallest σ whose `steps` steps at sampling `rate` spend at most `target` ε at `delta`."""
  return float(dp_accounting.calibrate_dp_mechanism(
      lambda: _accountant(kind), lambda sigma: _event(rate, sigma, steps), target, delta,
      bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-2, 1.0), tol=1e-4))


def capacity(num_examples: int, rate: float, multiple: int, steps: int, delta: float) -> int:
  """Rows a Poisson batch is padded to: the fewest (a multiple of `multiple`) that `steps` draws of
  Binomial(N, q) exceed with probability at most OVERFLOW_SHARE · δ."""
  rows = float(stats.binom.isf(OVERFLOW_SHARE * delta / max(steps, 1), num_examples, rate))
  rows = min(max(int(math.ceil(rows)), 1), num_examples)
  return -(-rows // multiple) * multiple


def overflow_probability(num_examples: int, rate: float, rows: int, steps: int) -> float:
  """An upper bound on the chance that any of `steps` draws has more than `rows` examples."""
  return min(1.0, steps * float(stats.binom.sf(rows, num_examples, rate)))


@dataclasses.dataclass(frozen=True)
class Plan:
  """A private run's sampling and noise, fixed before its first step."""
  num_examples: int
  rate: float
  expected_batch: int
  capacity: int
  clip_norm: float
  noise_multiplier: float
  delta: float
  steps: int
  kind: str
  secure: bool = True

  def epsilon(self, step: int) -> float:
    """ε at δ spent by the first `step` steps."""
    return epsilon(self.rate, self.noise_multiplier, step, self.delta, self.kind)

  @property
  def overflow(self) -> float:
    return overflow_probability(self.num_examples, self.rate, self.capacity, self.steps)

  def record(self) -> dict:
    """What the run's provenance (privacy.json) keeps."""
    return {**dataclasses.asdict(self), 'sampling': 'poisson', 'unit': 'one training example (row) of the source',
            'epsilon': self.epsilon(self.steps),
            'overflow_probability': self.overflow, 'delta_total': self.delta + self.overflow,
            'accountant_library': f'dp_accounting ({self.kind})'}

  def summary(self) -> str:
    return (f'DP-SGD (per training example): Poisson sampling q={self.rate:.4g} of {self.num_examples:,} examples '
            f'(expected batch {self.expected_batch}, padded to {self.capacity}), clip C={self.clip_norm:g}, noise σ='
            f'{self.noise_multiplier:.4g}; after {self.steps:,} steps ε={self.epsilon(self.steps):.3g} at '
            f'δ={self.delta:g} ({self.kind}; capacity overflow adds ≤ {self.overflow:.1e} to δ)'
            + ('.' if self.secure else '; NOT SECURE: the noise and draws follow from config.seed.'))


def make_plan(config: ml_collections.ConfigDict, *, num_examples: int, multiple: int) -> Plan:
  """The Plan of a run's `config` (its privacy, batch_size, num_steps) over `num_examples` training examples,
  padded to a multiple of `multiple` rows. Raises ValueError naming the setting to change."""
  p = config.privacy
  batch, steps = int(config.batch_size), int(config.num_steps)
  if p.accountant not in ACCOUNTANTS:
    raise ValueError(f'config.privacy.accountant={p.accountant!r}: choose one of {ACCOUNTANTS}.')
  if not 0 < batch <= num_examples:
    raise ValueError(f'config.batch_size={batch} is the expected Poisson batch; it must lie in [1, {num_examples}] '
                     f'for the training data\'s {num_examples:,} examples.')
  if not p.clip_norm > 0:
    raise ValueError(f'config.privacy.clip_norm={p.clip_norm}: the per-example clip norm must be > 0.')
  if not 0 < p.delta < 1.0 / num_examples:
    raise ValueError(f'config.privacy.delta={p.delta:g}: it must be in (0, 1/N) = (0, {1.0 / num_examples:.3g}) '
                     f'for the {num_examples:,} training examples (a δ near 1/N allows leaking whole examples).')
  rate = batch / num_examples
  sigma = float(p.noise_multiplier)
  if p.target_epsilon > 0:
    if sigma > 0:
      raise ValueError('config.privacy gives both noise_multiplier and target_epsilon: set one (the other to 0).')
    sigma = noise_for_epsilon(float(p.target_epsilon), rate, steps, float(p.delta), p.accountant)
  elif sigma <= 0:
    raise ValueError('config.privacy.enabled needs noise: set noise_multiplier > 0 or target_epsilon > 0.')
  plan = Plan(num_examples, rate, batch, capacity(num_examples, rate, multiple, steps, float(p.delta)),
              float(p.clip_norm), sigma, float(p.delta), steps, p.accountant, bool(p.get('secure', False)))
  if p.epsilon_budget > 0:
    eps = plan.epsilon(steps)
    if eps > p.epsilon_budget:
      raise ValueError(f'config.privacy.epsilon_budget={p.epsilon_budget:g} is less than the ε={eps:.3g} that '
                       f'{steps:,} steps at q={rate:.4g}, σ={sigma:.4g} spend: raise noise_multiplier, lower '
                       'num_steps or batch_size, set target_epsilon, or raise the budget.')
  return plan


RECORD = 'privacy.json'  # in a private run's workdir, written by the trainer at its start
SECRET = 'privacy_secret'  # a secure private run's seed, mode 0600: never part of what is released
FIXED = ('num_examples', 'rate', 'clip_norm', 'noise_multiplier', 'delta', 'kind', 'secure')  # across resumes


def run_seed(workdir: str, config: ml_collections.ConfigDict, *, create: bool = False) -> int:
  """The seed of a private run's keys and Poisson draws: config.seed when `config.privacy.secure` is off (or
  absent: a run from before it existed), else a 64-bit secret from os.urandom kept in
  <workdir>/privacy_secret (made here when `create`)."""
  if not config.privacy.get('secure', False):
    return int(config.seed)
  path = os.path.join(workdir, SECRET)
  if not os.path.exists(path):
    if not create:
      raise FileNotFoundError(f'{path} not found: a secure private run keeps its seed there (config.privacy.'
                              'secure); without it its draws cannot be recomputed.')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as f:
      f.write(str(int.from_bytes(os.urandom(8), 'little')))
  with open(path) as f:
    return int(f.read().strip())


def check_resume(record: dict, previous: dict | None) -> None:
  """Refuses to go on with another mechanism than the one a run's earlier steps used: its ε would be wrong."""
  if previous is None:
    return
  changed = [k for k in FIXED if previous.get(k) != record.get(k)]
  if changed:
    raise ValueError(f'config.privacy: this workdir\'s earlier steps ran with {", ".join(f"{k}={previous.get(k)}" for k in changed)} '
                     f'(its {RECORD}); now {", ".join(f"{k}={record.get(k)}" for k in changed)}. One run must keep one '
                     'mechanism for its ε to hold: resume with the earlier settings, or start a new workdir.')


def read_record(workdir: str) -> dict | None:
  """The privacy record of the run in `workdir` (Plan.record()), None for a run trained without DP-SGD."""
  path = os.path.join(workdir, RECORD)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def statement(record: dict, step: int) -> str:
  """One line of what the parameters of `step` promise: what exports, reports and `evaluate` carry."""
  eps = epsilon(record['rate'], record['noise_multiplier'], step, record['delta'], record['kind'])
  return (f'DP-SGD: ({eps:.3g}, {record["delta_total"]:.2g})-DP per training example at step {step} '
          f'({record["kind"]}; Poisson q={record["rate"]:.3g}, sigma={record["noise_multiplier"]:.3g}, '
          f'C={record["clip_norm"]:g}, {record["num_examples"]} examples'
          + ('' if record.get('secure', False) else '; not secure: noise from config.seed') + ')')

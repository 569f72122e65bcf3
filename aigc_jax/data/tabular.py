"""Patient rows for risk prediction: a real cohort (aigc_jax/tabular/cohorts.py), encoded for the model.

  config.data.name = 'tabular'
  config.data.cohort = 'flchain'       # or 'pima', 'breast_cancer'
  config.data.val_fraction, config.data.test_fraction = 0.15, 0.25   # by a stable hash of the patient

A batch holds 'features' [B, F] float32 (standardized with the training split's statistics, missing values
flagged), 'labels' [B, K] (0/1) and 'label_mask' [B, K] (1 where the outcome is known: flchain's censored
patients have an unknown 10-year outcome). The training stream is the training split, reshuffled each epoch.
"""

import jax
import ml_collections
import numpy as np

from aigc_jax.data import serving
from aigc_jax.tabular import cohorts


class TabularRows(serving.RowsSource):
  """The data source of risk prediction (registered as 'tabular'). `workdir` is accepted and unused: the
  encoder is refitted from the training split, which does not change between starts."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    del workdir
    self.config = config
    self.cohort = cohorts.load(config.cohort)
    self.label_names = self.cohort.label_names
    self._splits = {s: cohorts.split(self.cohort, s, config.val_fraction, config.test_fraction)
                    for s in cohorts.corpora.SPLITS}
    for s, part in self._splits.items():
      if not len(part.ids):
        raise ValueError(f'config.data.cohort={config.cohort!r} has no {s} patients at val_fraction='
                         f'{config.val_fraction}, test_fraction={config.test_fraction}: raise them.')
    self.encoder = cohorts.Encoder.fit(self._splits['train'])
    self._rows = {}

  def patients(self, split: str) -> cohorts.Cohort:
    """The raw columns of `split` (the classical baselines read them)."""
    return self._splits[split]

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """{'features', 'labels', 'label_mask'} of every patient of `split`."""
    if split not in self._rows:
      part = self._splits[split]
      self._rows[split] = {'features': self.encoder(part), 'labels': part.labels, 'label_mask': part.mask}
    return self._rows[split]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    k = len(self.label_names)
    return {'features': jax.ShapeDtypeStruct((batch_size, len(self.encoder.columns)), np.float32),
            'labels': jax.ShapeDtypeStruct((batch_size, k), np.float32),
            'label_mask': jax.ShapeDtypeStruct((batch_size, k), np.float32)}

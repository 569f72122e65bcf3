"""CT slices paired with their reports, for image → report (registered as 'phantom_reports').

  config.data.name = 'phantom_reports'
  config.data.seed = 10_000          # training slices; validation seed + 1, test seed + 2 (other slices)
  config.data.num_train, num_validation, num_test = 4_096, 256, 512
  config.data.image_size = 64        # the phantom rendered at this size (field of view 400 mm)
  config.data.lesion_prob = 0.5
  config.data.windows = ((-1000, 1000), (-160, 240))   # HU windows → input channels, each onto [-1, 1]
  config.data.target_len = 64        # report tokens kept, [EOS] included
  config.data.seq_len = 68           # the decoder's row: the cue "FINDINGS:" then the report

Each example is a slice of the built-in phantom (aigc_jax/data/phantom.py), its noise a full-dose scan's, and
the report `aigc_jax/text/slice_reports.py` composes from its labels, worded by a generator seeded by the
slice, so the pairs are a deterministic function of the config. The image is served in the configured HU
windows (lung and soft tissue by default: a liver mass differs from the liver by 25–45 HU, which a single
2000-HU window squeezes into 2% of its range). Rows are those of the text sources: 'tokens', 'segment_ids',
'positions', 'loss_mask' (1 where the next token is the report's) and 'image' [N, H, W, channels]. The
tokenizer follows `text.resolve_tokenizer` (a pretraining run's when fine-tuning, else one trained on the
training reports).
"""

import jax
import ml_collections
import numpy as np

from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from aigc_jax.data import serving
from aigc_jax.data import text
from aigc_jax.text import slice_reports

CUE = 'FINDINGS:'
KEYS = text.KEYS + ('loss_mask',)
SPLITS = ('train', 'validation', 'test')


def images(hu: np.ndarray, windows) -> np.ndarray:
  """HU [..., H, W] → [..., H, W, len(windows)], each channel one window mapped onto [-1, 1]."""
  return np.stack([pipeline.window(hu, float(lo), float(hi)) for lo, hi in windows], axis=-1)


class PhantomReports(serving.RowsSource):

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    self.config = config
    if not config.windows or any(len(w) != 2 or w[0] >= w[1] for w in config.windows):
      raise ValueError(f'config.data.windows={config.windows!r}: give one or more (low, high) HU pairs, low < high.')
    if config.seq_len <= config.target_len:
      raise ValueError(f'config.data.seq_len={config.seq_len} must leave room for the cue before '
                       f'target_len={config.target_len} report tokens.')
    self._slices = {}
    self.tokenizer = text.resolve_tokenizer(config, workdir, lambda: [f'{CUE} {r}' for r in self.reports('train')])
    self._cue = self.tokenizer.encode([CUE])[0]
    if len(self._cue) >= config.seq_len - config.target_len + 1:
      raise ValueError(f'config.data.seq_len={config.seq_len}: the cue takes {len(self._cue)} tokens; raise it.')
    self._rows = {}

  def _count(self, split: str) -> int:
    if split not in SPLITS:
      raise ValueError(f'{split!r} is not a split of phantom_reports; use one of {SPLITS}.')
    n = int(self.config.get(f'num_{split}', 0))
    if n <= 0:
      raise ValueError(f'config.data.num_{split}={n}: the {split} split needs slices.')
    return n

  def seed(self, split: str) -> int:
    """The phantom seed of `split`'s slices (and of their wording): config.data.seed + 0, 1, 2."""
    return int(self.config.seed) + SPLITS.index(split)

  def slices(self, split: str) -> tuple[np.ndarray, list[dict], list[str]]:
    """(HU [N, H, W], the phantom's labels of each slice (phantom.phantom_slice), the reports) of `split`."""
    if split not in self._slices:
      seed = self.seed(split)
      pairs = [phantom.phantom_slice(seed, i, int(self.config.image_size), lesion_prob=float(self.config.lesion_prob))
               for i in range(self._count(split))]
      labels = [lab for _, lab in pairs]
      reports = [slice_reports.compose(lab, np.random.default_rng([seed, i, 7])) for i, lab in enumerate(labels)]
      self._slices[split] = (np.stack([hu for hu, _ in pairs]), labels, reports)
    return self._slices[split]

  def labels(self, split: str) -> list[dict]:
    return self.slices(split)[1]

  def reports(self, split: str) -> list[str]:
    return self.slices(split)[2]

  def truths(self, split: str) -> list[dict]:
    """What each report of `split` should say (`slice_reports.truth`)."""
    return [slice_reports.truth(lab) for lab in self.labels(split)]

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """{'tokens', 'segment_ids', 'positions', 'loss_mask'} [N, seq_len] and 'image' [N, H, W, C]."""
    if split not in self._rows:
      hu, _, reports = self.slices(split)
      targets = text.target_tokens(self.tokenizer, reports, self.config.target_len, f'{split} reports')
      n, length = len(reports), self.config.seq_len
      out = {k: np.zeros((n, length), np.float32 if k == 'loss_mask' else np.int32) for k in KEYS}
      for i, t in enumerate(targets):
        ids = self._cue + t
        out['tokens'][i, :len(ids)] = ids
        out['segment_ids'][i, :len(ids)] = 1
        out['loss_mask'][i, len(self._cue) - 1:len(ids) - 1] = 1.0   # position j predicts token j + 1
      out['positions'][:] = np.arange(length, dtype=np.int32)
      out['image'] = images(hu, self.config.windows)
      self._rows[split] = out
    return self._rows[split]

  def inputs_for(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """What `task.generate` needs to report on `image` [N, H, W, C] (already windowed): the cue as prompt."""
    n = len(image)
    return {'prompt': np.tile(np.asarray(self._cue, np.int32), (n, 1)), 'start': np.zeros(n, np.int32),
            'image': image}

  def prompts(self, split: str) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """(the inputs of `split`'s slices, their reference reports, their indices as keys)."""
    rows = self.rows(split)
    reports = self.reports(split)
    return self.inputs_for(rows['image']), list(reports), [str(i) for i in range(len(reports))]

  def decode(self, rows: np.ndarray) -> list[str]:
    """Generated token rows [N, L] → reports, each up to its first [EOS]."""
    return text.decode_rows(self.tokenizer, rows)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    spec = {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.float32 if k == 'loss_mask' else np.int32)
            for k in KEYS}
    size = int(self.config.image_size)
    spec['image'] = jax.ShapeDtypeStruct((batch_size, size, size, len(self.config.windows)), np.float32)
    return spec


def nearest_reports(train_images: np.ndarray, train_reports: list[str], images: np.ndarray,
                    chunk: int = 256) -> list[str]:
  """The report of the training image nearest (Euclidean, over every pixel and window) to each image: the
  retrieval baseline of image → report."""
  flat = train_images.reshape(len(train_images), -1).astype(np.float32)
  norms = (flat ** 2).sum(1)
  out = []
  for i in range(0, len(images), chunk):
    q = images[i:i + chunk].reshape(len(images[i:i + chunk]), -1).astype(np.float32)
    out += [train_reports[j] for j in np.argmin(norms[None] - 2.0 * q @ flat.T, axis=1)]
  return out


def redrawn_reports(data: PhantomReports, split: str) -> list[str]:
  """The reports of `split` composed again from the true labels with other wording draws: what a model that
  reads every slice right, but cannot know which of the radiologists' phrasings the reference drew, scores."""
  seed = data.seed(split)
  return [slice_reports.compose(labels, np.random.default_rng([seed, i, 8]))
          for i, labels in enumerate(data.labels(split))]

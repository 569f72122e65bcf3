"""Token rows for the language models: documents → tokenizer → packed rows of `seq_len` tokens.

  config.data.name = 'text'
  config.data.corpora = ('icd10cm', 'iu_reports')   # aigc_jax/text/corpora.py
  config.data.data_dir = ''         # for corpora 'tfds:NAME' (users' text, python -m aigc_jax.prepare_text)
  config.data.seq_len = 128
  config.data.tokenizer = ''        # a tokenizer file (python -m aigc_jax.tokenizer); '' trains one at start
  config.data.tokenizer_kind = 'bpe'   # when training one: 'bpe' (causal) or 'wordpiece' (masked LM)
  config.data.vocab_size = 8192
  config.data.val_fraction, config.data.test_fraction = 0.05, 0.05   # by document group (corpora.split_of)

A batch holds 'tokens', 'segment_ids' (1, 2, … for the documents in a row; 0 is padding) and 'positions'
(restarting at 0 in each document), all int32 [B, seq_len]. Documents end with [EOS] and follow one another
across rows (GPT-2's packing: no padding in training rows; a document cut at a row's end goes on at position 0
of the next row).

The tokenizer is saved with the run: the first start writes `<workdir>/tokenizer.json`, and every later
start, resume, `evaluate` or `sample` reads that file. A configured tokenizer file that differs from the saved
one is refused (the model's token ids would mean other words). With no file configured, one is trained on the
training split of the corpora (never on validation or test text).
"""

import os

import jax
import ml_collections
import numpy as np

from aigc_jax.core import reporting
from aigc_jax.data import serving
from aigc_jax.data import text_prepare
from aigc_jax.text import coding
from aigc_jax.text import corpora
from aigc_jax.text import tokenizer as tokenizer_lib

TOKENIZER_FILE = 'tokenizer.json'
PREPARED = 'tfds:'   # a corpus or coding task written by python -m aigc_jax.prepare_text
KEYS = ('tokens', 'segment_ids', 'positions')


def pack(docs: list[list[int]], seq_len: int, eos: int, *, pad_last: bool = False) -> dict[str, np.ndarray]:
  """Token lists → rows {'tokens', 'segment_ids', 'positions'} [N, seq_len] int32, each document followed by
  `eos`. The tail that does not fill a row is dropped, or padded (segment 0) with `pad_last`."""
  lengths = np.array([len(d) + 1 for d in docs], np.int64)
  stream = np.fromiter((t for d in docs for t in (*d, eos)), np.int32, count=int(lengths.sum()))
  doc_of = np.repeat(np.arange(len(docs)), lengths)
  doc_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
  n = len(stream)
  rows = -(-n // seq_len) if pad_last else n // seq_len
  total = rows * seq_len
  if total > n:
    pad = total - n
    stream = np.concatenate([stream, np.zeros(pad, np.int32)])
    doc_of = np.concatenate([doc_of, np.full(pad, -1)])
    doc_start = np.concatenate([doc_start, np.full(pad, n)])
  stream, doc_of, doc_start = stream[:total], doc_of[:total], doc_start[:total]
  index = np.arange(total)
  row_start = index - index % seq_len
  positions = index - np.maximum(doc_start, row_start)
  doc_of = doc_of.reshape(rows, seq_len)
  segment = doc_of - doc_of[:, :1] + 1  # documents numbered from 1 within each row
  segment[doc_of < 0] = 0
  positions = positions.reshape(rows, seq_len)
  positions[doc_of < 0] = 0
  return {'tokens': stream.reshape(rows, seq_len), 'segment_ids': segment.astype(np.int32),
          'positions': positions.astype(np.int32)}


def documents(config: ml_collections.ConfigDict, split: str) -> list[corpora.Document]:
  """The documents of `split` of the configured corpora (the first `max_documents` of each corpus, if set;
  a prepared dataset, 'tfds:NAME', keeps the splits it was written with)."""
  out = []
  for name in config.corpora:
    if name.startswith(PREPARED):
      docs = [corpora.Document(f'{name}:{i}', name, t)
              for i, (t, _) in enumerate(text_prepare.load(name[len(PREPARED):], config.data_dir, split))]
      out += docs[:config.max_documents] if config.max_documents else docs
      continue
    docs = list(corpora.load([name]))
    if config.max_documents:
      docs = docs[:config.max_documents]
    out += corpora.split(docs, split, config.val_fraction, config.test_fraction)
  if not out:
    raise ValueError(f'config.data.corpora={tuple(config.corpora)} has no {split} documents (max_documents='
                     f'{config.max_documents}, val_fraction={config.val_fraction}, test_fraction='
                     f'{config.test_fraction}): raise them.')
  return out


def resolve_tokenizer(config: ml_collections.ConfigDict, workdir: str | None, train_texts=None
                      ) -> tokenizer_lib.Tokenizer:
  """The run's tokenizer (see the module doc); saved into `workdir` when it is new there. `config.tokenizer`
  may be a tokenizer file or a run's workdir (its tokenizer.json: fine-tuning keeps the pretraining run's);
  `train_texts()` gives the texts to train one on (default: the training split of the corpora)."""
  saved = os.path.join(workdir, TOKENIZER_FILE) if workdir else ''
  have_saved = bool(saved) and os.path.exists(saved)
  if config.tokenizer:
    path = config.tokenizer
    if os.path.isdir(path):
      path = os.path.join(path, TOKENIZER_FILE)
    tok = tokenizer_lib.load(path)
    if have_saved and tokenizer_lib.load(saved).sha256 != tok.sha256:
      raise ValueError(f'config.data.tokenizer={config.tokenizer} differs from the tokenizer this run was trained '
                       f'with ({saved}): its token ids mean other words. Drop --config.data.tokenizer to continue '
                       'the run, or start a new workdir.')
  elif have_saved:
    tok = tokenizer_lib.load(saved)
  else:
    texts = train_texts() if train_texts else [d.text for d in documents(config, 'train')]
    tok = tokenizer_lib.train(texts, config.tokenizer_kind, config.vocab_size)
    reporting.log(f'trained a {tok.kind} tokenizer of {tok.vocab_size} tokens on {len(texts):,} training '
                  'documents')
  if tok.vocab_size > config.vocab_size:
    raise ValueError(f'the tokenizer {config.tokenizer} has {tok.vocab_size} tokens, more than config.data.vocab_size='
                     f'{config.vocab_size} (the model\'s embedding): set --config.data.vocab_size={tok.vocab_size}.')
  if saved and not have_saved and jax.process_index() == 0:
    tok.save(saved)
  return tok


def target_tokens(tokenizer: tokenizer_lib.Tokenizer, texts: list[str], target_len: int, what: str
                  ) -> list[list[int]]:
  """Each text's tokens (after a space, as it follows a cue) and [EOS], cut to `target_len`; one log line
  says how many were cut (`what`: e.g. 'train reports'), since a cut target is learned without its end."""
  full = [t + [tokenizer_lib.EOS] for t in tokenizer.encode([' ' + x for x in texts])]
  cut = sum(len(t) > target_len for t in full)
  if cut:
    reporting.log(f'{cut:,} of {len(full):,} {what} are longer than config.data.target_len={target_len} tokens '
                  f'with [EOS] (the longest: {max(map(len, full))}) and are cut; raise target_len (and seq_len) '
                  'to keep them whole.')
  return [t[:target_len] for t in full]


def decode_rows(tokenizer: tokenizer_lib.Tokenizer, rows: np.ndarray) -> list[str]:
  """Generated token rows [N, L] → texts, each up to its first [EOS]."""
  out = []
  for row in np.asarray(rows):
    stop = np.flatnonzero(row == tokenizer_lib.EOS)
    out.append(tokenizer.decode(row[:stop[0]] if len(stop) else row).strip())
  return out


class TextRows(serving.RowsSource):
  """The data source of the language models (registered as 'text'): packed rows of the training split.

  `workdir`: where the run keeps its tokenizer (None: nowhere; a tokenizer trained here is then not kept)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    self.config = config
    self.tokenizer = resolve_tokenizer(config, workdir)
    self._rows = {}

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """Packed rows of `split` (tokenized once per source); held-out splits keep their last, padded row."""
    if split not in self._rows:
      docs = documents(self.config, split)
      ids = self.tokenizer.encode([d.text for d in docs])
      self._rows[split] = pack(ids, self.config.seq_len, tokenizer_lib.EOS, pad_last=split != 'train')
      if not len(self._rows[split]['tokens']):
        raise ValueError(f'The {split} split of {tuple(self.config.corpora)} has fewer than seq_len='
                         f'{self.config.seq_len} tokens: lower config.data.seq_len or raise max_documents.')
    return self._rows[split]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.int32) for k in KEYS}



class LabelledText(serving.RowsSource):
  """The data source of the coding tasks (registered as 'text_labels'): one document per row (truncated to
  `seq_len` tokens, padded with segment 0) and its codes as a multi-hot 'labels' [K] float32.

    config.data.task = 'iu_mesh'       # aigc_jax/text/coding.py; 'tfds:NAME' with data_dir: your labelled text
    config.data.min_count = 30         # labels with at least this many training documents

  The tokenizer follows the rules of `resolve_tokenizer` (give the pretraining run's workdir to fine-tune;
  with none, one is trained on the task's training texts)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    self.config = config
    if config.task.startswith(PREPARED):
      self.splits = {s: text_prepare.load(config.task[len(PREPARED):], config.data_dir, s) for s in corpora.SPLITS}
      self.label_names = coding.frequent_labels(self.splits['train'], config.min_count)
    else:
      self.splits, self.label_names = coding.load(config.task, min_count=config.min_count,
                                                  val_fraction=config.val_fraction,
                                                  test_fraction=config.test_fraction,
                                                  clinosim=config.get('clinosim'))
    if not self.label_names:
      raise ValueError(f'config.data.task={config.task!r} has no label with min_count={config.min_count} '
                       'training documents: lower min_count.')
    self.tokenizer = resolve_tokenizer(config, workdir, lambda: [t for t, _ in self.splits['train']])
    self._rows = {}

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """{'tokens', 'segment_ids', 'positions', 'labels'} of every document of `split`."""
    if split not in self._rows:
      examples = self.splits[split]
      if not examples:
        raise ValueError(f'config.data.task={self.config.task!r} has no {split} documents: raise '
                         'config.data.val_fraction / test_fraction (for tfds: data, --val_fraction / '
                         '--test_fraction of python -m aigc_jax.prepare_text).')
      n, length = len(examples), self.config.seq_len
      tokens = np.zeros((n, length), np.int32)
      seg = np.zeros((n, length), np.int32)
      for i, ids in enumerate(self.tokenizer.encode([t for t, _ in examples])):
        ids = ids[:length]
        tokens[i, :len(ids)] = ids
        seg[i, :len(ids)] = 1
      index = {name: k for k, name in enumerate(self.label_names)}
      labels = np.zeros((n, len(self.label_names)), np.float32)
      for i, (_, codes) in enumerate(examples):
        for c in codes:
          if c in index:
            labels[i, index[c]] = 1.0
      self._rows[split] = {'tokens': tokens, 'segment_ids': seg,
                           'positions': np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)).copy(),
                           'labels': labels}
    return self._rows[split]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    spec = {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.int32) for k in KEYS}
    spec['labels'] = jax.ShapeDtypeStruct((batch_size, len(self.label_names)), np.float32)
    return spec

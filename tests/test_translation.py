"""Medical translation data: the gettext reader, the pair filter, the split by ICD-10 block and by ICD-11 stem,
sacrebleu's scores,
the translation-memory baseline, the baseline command and a test-size translator run."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import sacrebleu

from aigc_jax import experiment
from aigc_jax.core import checkpoint
from aigc_jax.core import reporting
from aigc_jax.data import text_pairs
from aigc_jax.text import corpora
from aigc_jax.text import translation
from configs import lm_gpt
from configs import translate_text

CATALOGUE = r'''#
msgid ""
msgstr "Content-Type: text/plain; charset=utf-8\n"

msgctxt "model:gnuhealth.pathology,name:A00"
msgid "Cholera"
msgstr "Cólera"

msgctxt "model:gnuhealth.pathology,name:A001"
msgid ""
"Cholera due to Vibrio cholerae 01, "
"biovar eltor"
msgstr "Cólera debido a \"vibrio\" cholerae 01, biotipo el tor"
msgctxt "model:gnuhealth.pathology,name:A009"
msgid "Cholera, unspecified"
msgstr ""
'''


def test_the_catalogue_reader_joins_continuations_and_unescapes(tmp_path):
  path = tmp_path / 'es.po'
  path.write_text(CATALOGUE, encoding='utf-8')
  entries = translation.read_po(path)
  assert [e.get('msgctxt', '') for e in entries][1:] == ['model:gnuhealth.pathology,name:A00',
                                                          'model:gnuhealth.pathology,name:A001',
                                                          'model:gnuhealth.pathology,name:A009']
  assert entries[2]['msgid'] == 'Cholera due to Vibrio cholerae 01, biovar eltor'
  assert entries[2]['msgstr'] == 'Cólera debido a "vibrio" cholerae 01, biotipo el tor'
  assert entries[3]['msgstr'] == ''
  path.write_text(CATALOGUE + 'garbage line\n', encoding='utf-8')
  with pytest.raises(ValueError, match=r'es.po:\d+: not a gettext catalogue line'):
    translation.read_po(path)


def test_untranslated_and_context_expanded_pairs_are_dropped():
  assert translation.keep('Cholera', 'Cólera')
  assert not translation.keep('Cholera', '') and not translation.keep('Cholera', 'Cholera')
  assert not translation.keep('Gout', 'Gota, incluida la gota saturnina y la gota inducida por fármacos')
  assert translation.keep('Cholera, unspecified', '霍乱，未特指', shortest=1 / 10)


def test_whole_icd10_blocks_are_held_out():
  entries = translation.icd10_entries('es')
  assert len(entries) > 10_000
  side_of = lambda block: corpora.split_of(f'icd10block:{block}', 0.1, 0.1)
  pairs = translation.icd10_pairs('es', 0.1, 0.1)
  train = {en.lower() for en, _ in pairs['train']}
  for split in ('validation', 'test'):
    held = set(pairs[split])
    assert held and not {en.lower() for en, _ in held} & train          # no verbatim repeat of a training title
    # Every held-out pair comes from a block on its side; no block of its side is in training.
    assert all(side_of(b) == split for _, en, tr, b in entries if (en, tr) in held)
  sides = {}
  for _, en, tr, b in entries:
    sides.setdefault((en, tr), set()).add(side_of(b))
  assert all('train' in sides[p] for p in pairs['train'])
  assert ('Cholera', 'Cólera') in sum(pairs.values(), [])


def test_icd11_pairs_hold_out_the_stems_the_pretraining_corpus_holds_out():
  entries = translation.icd11_entries()
  assert 30_000 < len(entries) < 32_000                   # 31,094 of 33,110 codes are translated and kept
  groups = {d.id[len('icd11:'):]: d.group for d in corpora.icd11()}
  assert all(groups[code.replace('-', '.')] == g for code, _, _, g in entries)
  pairs = translation.icd11_pairs('es', 0.05, 0.1)
  train = {en.lower() for en, _ in pairs['train']}
  assert pairs['test'] and not {en.lower() for en, _ in pairs['test']} & train
  held = set(pairs['test'])
  assert all(corpora.split_of(g, 0.05, 0.1) == 'test' for _, en, tr, g in entries if (en, tr) in held)
  assert text_pairs.translation_pairs('icd11_translation', 'es', 0.05, 0.1) == pairs
  with pytest.raises(ValueError, match='ships es only'):
    translation.icd11_pairs('de', 0.05, 0.1)
  with pytest.raises(ValueError, match='tfds:NAME'):
    text_pairs.translation_pairs('icd12', 'es', 0.05, 0.1)


def test_scores_are_sacrebleus_own():
  hyps = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']
  refs = ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.']
  s = translation.scores(refs, hyps, 'es')
  assert s['bleu'] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
  assert s['chrf'] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
  assert 'tok:13a' in s['bleu_signature'] and 'tok:zh' in translation.scores(['霍乱'], ['霍乱'], 'zh')['bleu_signature']
  assert translation.scores(refs, refs, 'de')['bleu'] == pytest.approx(100.0)


def test_the_translation_memory_returns_the_nearest_titles_translation():
  train = [('Cholera, unspecified', 'Cólera, no especificado'), ('Typhoid fever', 'Fiebre tifoidea')]
  assert translation.translation_memory(train, ['Typhoid fevers', 'cholera unspecified']) == \
      ['Fiebre tifoidea', 'Cólera, no especificado']


def test_baseline_command_and_a_test_size_translator(tmp_path):
  out = tmp_path / 'b.json'
  subprocess.run([sys.executable, '-m', 'aigc_jax.baseline', '--config=configs/translate_text.py:test',
                  f'--out={out}'], check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  base = json.loads(out.read_text())['es']
  assert base['translation_memory']['bleu'] > base['copy_source']['bleu'] + 10       # docs/reports.md: 23.7 vs 0.6
  c = translate_text.get_config('test')
  experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  logged = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/bleu_es' in r][-1]
  assert 0 <= test['test/bleu_es'] <= 100 and test['test/chrf_mean'] == test['test/chrf_es']


def test_a_translator_starts_from_a_language_models_blocks_with_its_own_tokenizer(tmp_path, monkeypatch):
  lm = lm_gpt.get_config('test')
  lm.evals = ml_collections.ConfigDict()
  experiment.train_and_evaluate(lm, str(tmp_path / 'lm'))
  c = translate_text.get_config('test_blocks')
  c.evals = ml_collections.ConfigDict()
  c.init_from = str(tmp_path / 'lm')
  c.optim.learning_rate = 0.0       # nothing moves: the finished params are the loaded ones
  c.num_steps, c.checkpoint_every = 1, 1
  state = experiment.train_and_evaluate(c, str(tmp_path / 'tr'))
  _, task, _, _, data = experiment.load_run(str(tmp_path / 'lm'), with_data=True)
  pre = checkpoint.restore_params(str(tmp_path / 'lm'), {'params': experiment.abstract_params(task, data)})['params']
  assert set(c.init_parts) == {f'block_{i}' for i in range(lm.model.depth)} | {'ln_final'}
  for name in c.init_parts:
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params[name]), jax.device_get(pre[name]))
  # The embeddings are fresh, over a tokenizer of the translation pairs (not the English LM's).
  assert not np.allclose(np.asarray(state.params['embed']['embedding']), np.asarray(pre['embed']['embedding']))
  assert (tmp_path / 'tr' / 'tokenizer.json').read_bytes() != (tmp_path / 'lm' / 'tokenizer.json').read_bytes()
  # The variant run without the pretrained run says that nothing was loaded.
  said = []
  monkeypatch.setattr(reporting, 'log', said.append)
  c.init_from = ''
  experiment.train_and_evaluate(c, str(tmp_path / 'alone'))
  assert any('config.init_from is empty' in line and 'block_0' in line for line in said), said


def test_the_apertium_peer_keeps_one_line_out_per_title():
  # benchmarks/apertium_peer.py, with ordinary filters standing in for apertium (not a Python dependency).
  spec = importlib.util.spec_from_file_location(
      'apertium_peer', pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'apertium_peer.py')
  peer = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(peer)
  titles = ['Cholera, unspecified', '', 'Acute myocardial infarction']
  assert peer.translate_lines(titles, [['cat'], ['tr', 'a-z', 'A-Z']]) == [t.upper() for t in titles]
  with pytest.raises(RuntimeError, match='gave 1 lines for 3'):
    peer.translate_lines(titles, [['head', '-n', '1']])
  with pytest.raises(ValueError, match='line break'):
    peer.translate_lines(['a\nb'], [['cat']])

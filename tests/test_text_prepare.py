"""Users' own text: the de-identification patterns, the prepare command with identifiers planted wherever
they can hide (text, folder names, fields, labels, the group, logs), splits by group, the language-model
and coding sources reading the prepared dataset, and parallel text for the translators."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from aigc_jax.data import text
from aigc_jax.text import deid
from aigc_jax.data import text_prepare
from aigc_jax import registry
from aigc_jax.data import text_pairs
from configs import lm_gpt
from configs import text_coding
from configs import translate_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('planted, tag', [
    ('jane.roe@mail.example.org', 'EMAIL'), ('https://portal.example.org/p?id=7', 'URL'), ('10.1.22.7', 'IP'),
    ('123-45-6789', 'SSN'), ('(555) 201-7788', 'PHONE'), ('+44 20 7946 0958', 'PHONE'), ('03/12/2024', 'DATE'),
    ('2024-03-12T10:30', 'DATE'), ('12 March 2024', 'DATE'), ('Mar 3rd, 2024', 'DATE'), ('March 2024', 'DATE'),
    ('8812345', 'ID'), ('AB123456', 'ID'), ('93-year-old', 'AGE>89')])
def test_each_identifier_form_becomes_its_tag(planted, tag):
  s = deid.Scrubber()
  out = s.scrub(f'Seen on ward 4 ({planted}) with a cough.')
  assert planted not in out and f'[{tag}]' in out and out.startswith('Seen on ward 4 (')
  assert s.counts[tag] == 1


def test_labelled_and_titled_identifiers_keep_their_label():
  s = deid.Scrubber()
  assert s.scrub('MRN: Q77-1024, Acc # 5521 by Dr. Alan Grant. Signed by: Ellie Sattler') == \
      'MRN: [ID], Acc # [ID] by Dr. [NAME]. Signed by: [NAME]'
  assert s.scrub("Patient: Mary O'Brien, 95 yo") == 'Patient: [NAME], [AGE>89]'


def test_known_identifiers_go_wherever_they_are_word_by_word_ignoring_case():
  s = deid.Scrubber(names=('Hannah Quist',))
  out = s.scrub('Hannah Quist called; QUIST agreed. Jane Doe and jane came; Janet stays.', known=('Jane Doe',))
  assert out == '[NAME] called; [NAME] agreed. [NAME] and [NAME] came; Janet stays.'


def test_clinical_text_without_identifiers_is_left_alone():
  text = ('1.5 cm nodule at T4-T5 and C5-6, BP 120/80, 2.5 x 3.0 cm, in 2019, COVID-19, ICD J45.20, CT 5 mm, '
          'no effusion; medical record reviewed; Patient denies pain; 45 year old man; ward 12.')
  s = deid.Scrubber()
  assert s.scrub(text) == text and not s.counts
  with pytest.raises(ValueError, match='not a valid regular expression'):
    deid.Scrubber(extra=(('BED', 'bed (['),))


PLANTED = {  # what must never be written, and where it was hidden
    'Zelda Fitzgerald': 'folder name and untitled in the .txt body (path identifiers)',
    '55501234': 'folder name (a record number) and a .txt body',
    'Bartholomew Quince': 'an identifier field, named untitled in the text',
    'QX-99-7781': 'an identifier field, named in the text',
    'PID-0042': 'the group field (only its salted hash decides the split)',
    'Home address 12 Elm Street': 'a field that is not text, labels or identifier',
    'Marguerite Duras': 'the names file, untitled in a .csv cell',
    '1955-04-12': 'a date in a label and in the text',
    '(617) 555-0199': 'a phone number in a .csv cell',
    'Dr. Ignatius Reilly': 'a title in a .jsonl text',
    'secretsalt': 'the salt',
}


def _plant(tmp_path) -> pathlib.Path:
  inp = tmp_path / 'in'
  (inp / 'Zelda Fitzgerald 55501234').mkdir(parents=True)
  (inp / 'Zelda Fitzgerald 55501234' / 'note.txt').write_text(
      'Zelda Fitzgerald came back; record 55501234. Lungs clear, no effusion.')
  rows = [{'text': f'Seen by Dr. Ignatius Reilly. Bartholomew Quince, ref QX-99-7781, born 1955-04-12; visit {i}: '
                   'cough, mild wheeze.', 'patient': 'PID-0042', 'name': 'Bartholomew Quince', 'mrn': 'QX-99-7781',
           'address': 'Home address 12 Elm Street', 'codes': ['J45.20', 'born 1955-04-12']} for i in range(6)]
  rows += [{'text': f'Routine check {i}: heart size normal, no nodule.', 'patient': f'p{i}', 'codes': 'Z00.00'}
           for i in range(24)]
  (inp / 'notes.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n{broken\n')
  (inp / 'more.csv').write_text('text,patient,codes\n"Marguerite Duras phoned from (617) 555-0199 about '
                                'her chest film",p99,R07.9\n')
  (inp / 'scan.png').write_bytes(b'\x89PNG')
  (tmp_path / 'names.txt').write_text('Marguerite Duras\n')
  return inp


def _prepare(tmp_path, inp, *extra):
  return subprocess.run(
      [sys.executable, '-m', 'aigc_jax.prepare_text', f'--input={inp}', f'--output={tmp_path / "out"}',
       '--name=notes', '--labels_field=codes', '--identifier_fields=name,mrn', '--group=field:patient',
       f'--names_file={tmp_path / "names.txt"}', '--path_identifiers', '--salt=secretsalt', '--val_fraction=0.2',
       '--test_fraction=0.2', *extra], capture_output=True, text=True, cwd=ROOT)


def _leaks(blobs: dict[str, bytes]) -> list[str]:
  return [f'{p!r} ({where}) in {name}' for name, blob in blobs.items() for p, where in PLANTED.items()
          if p.lower().encode() in blob.lower()]


def test_prepare_writes_no_planted_identifier_anywhere(tmp_path):
  inp = _plant(tmp_path)
  run = _prepare(tmp_path, inp)
  assert run.returncode == 0, run.stderr[-2000:]
  out = tmp_path / 'out'
  blobs = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob('*') if p.is_file()}
  blobs['stdout+stderr'] = (run.stdout + run.stderr).encode()
  docs = {s: text_prepare.load('notes', str(out), s) for s in ('train', 'validation', 'test')}
  # The tokenizer a language model trains on the prepared text, and its rows, carry no identifier either.
  c = lm_gpt.get_config('test').data
  c.corpora, c.data_dir, c.vocab_size = ('tfds:notes',), str(out), 300
  work = tmp_path / 'run'
  work.mkdir()
  rows = text.TextRows(c, str(work)).rows('train')
  blobs['tokenizer.json'] = (work / 'tokenizer.json').read_bytes()
  assert not _leaks(blobs)
  assert rows['tokens'].shape[1] == c.seq_len
  report = json.loads((out / 'notes' / '1.0.0' / text_prepare.REPORT).read_text())
  assert sum(report['documents'].values()) == 32 and report['files_read'] == 3
  assert {s.get('reason', '')[:8] for s in report['skipped']} == {'not .txt', 'not JSON'}
  assert report['replacements']['NAME'] >= 6 + 6 + 2 + 1 and report['replacements']['PHONE'] == 1
  # One patient's six notes land in one split, with their cleaned labels and text.
  mine = [(s, t, y) for s, v in docs.items() for t, y in v if 'Quince' not in t and 'ref [ID]' in t]
  assert len(mine) == 6 and len({s for s, _, _ in mine}) == 1
  assert mine[0][2] == ('J45.20', 'born [DATE]') and 'Dr. [NAME]' in mine[0][1]
  assert any('[NAME] phoned from [PHONE]' in t for v in docs.values() for t, _ in v)
  # A second run with the same salt draws the same splits; an existing dataset is refused, not touched.
  again = _prepare(tmp_path, inp)
  assert again.returncode == 1 and 'already exists' in again.stderr
  assert (out / 'notes' / '1.0.0' / text_prepare.REPORT).read_text() == json.dumps(report, indent=1)


def test_prepare_says_what_is_wrong_with_bad_input(tmp_path):
  no_names = _prepare(tmp_path, tmp_path)
  assert no_names.returncode == 1 and 'names_file=' in no_names.stderr and 'is not a file' in no_names.stderr
  (tmp_path / 'names.txt').write_text('')
  missing = _prepare(tmp_path, tmp_path / 'nowhere')
  assert missing.returncode == 1 and 'neither a file nor a folder' in missing.stderr
  (tmp_path / 'bad.jsonl').write_text('{"note": "no text"}\n')
  nothing = _prepare(tmp_path, tmp_path / 'bad.jsonl')
  assert nothing.returncode == 1 and "no text in field 'text'" in nothing.stderr
  assert not (tmp_path / 'out' / 'notes').exists()


def test_coding_and_pretraining_read_a_prepared_dataset(tmp_path):
  docs = [{'text': f'{"wheeze cough" if i % 2 else "heart normal"} note {i}', 'codes': ['J45'] if i % 2 else [],
           'patient': f'p{i}'} for i in range(40)]
  (tmp_path / 'in.jsonl').write_text('\n'.join(json.dumps(d) for d in docs))
  scrub = deid.Scrubber()
  text_prepare.prepare(input_path=str(tmp_path / 'in.jsonl'), output=str(tmp_path / 'out'), name='coded',
                 opts=text_prepare.Options(labels_field='codes', group='field:patient'), scrubber=scrub,
                 val_fraction=0.25, test_fraction=0.25, salt='s')
  c = text_coding.get_config('test').data
  c.task, c.data_dir, c.min_count, c.tokenizer = 'tfds:coded', str(tmp_path / 'out'), 3, ''
  data = text.LabelledText(c)
  assert data.label_names == ('J45',)
  for split in ('train', 'validation', 'test'):
    rows, examples = data.rows(split), data.splits[split]
    assert rows['labels'][:, 0].tolist() == [float('wheeze' in t) for t, _ in examples]
  assert sum(len(v) for v in data.splits.values()) == 40
  c.task = 'tfds:absent'
  with pytest.raises(FileNotFoundError, match='prepare'):
    text.LabelledText(c)


def test_parallel_text_is_prepared_de_identified_and_read_by_the_translators(tmp_path):
  """A .tsv of English → Spanish / German pairs with identifiers planted on both sides and in a field: none is
  written; the pairs come back per language and split, and the translation config trains on them."""
  rows = ['english\ttranslation\tlang\tpatient\tmrn']
  for i in range(40):
    lang = 'es' if i % 4 else 'de'
    rows.append(f'Acute bronchitis, case {i}, Dr. Ignatius Reilly\tBronquitis aguda, caso {i}, Dr. Ignatius Reilly\t'
                f'{lang}\tPID-{i % 10}\tQX-99-7781')
  rows.append('Chest pain reported by (617) 555-0199\t\tes\tPID-1\tQX-99-7781')    # no translation: skipped
  (tmp_path / 'pairs.tsv').write_text('\n'.join(rows) + '\n')
  (tmp_path / 'names.txt').write_text('')
  run = subprocess.run(
      [sys.executable, '-m', 'aigc_jax.prepare_text', f'--input={tmp_path / "pairs.tsv"}',
       f'--output={tmp_path / "out"}', '--name=pairs', '--text_field=english', '--target_field=translation',
       '--language_field=lang', '--identifier_fields=mrn', '--group=field:patient', '--salt=secretsalt',
       '--val_fraction=0.2', '--test_fraction=0.2'], capture_output=True, text=True, cwd=ROOT)
  assert run.returncode == 0, run.stderr[-2000:]
  out = tmp_path / 'out'
  blobs = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob('*') if p.is_file()}
  blobs['stdout+stderr'] = (run.stdout + run.stderr).encode()
  assert not _leaks(blobs)
  report = json.loads((out / 'pairs' / '1.0.0' / text_prepare.REPORT).read_text())
  assert sum(report['languages']['es'].values()) == 30 and sum(report['languages']['de'].values()) == 10
  assert [s['line'] for s in report['skipped']] == [42]
  es = text_prepare.load_pairs('pairs', str(out), 'es')
  assert sum(map(len, es.values())) == 30 and all(len(v) for v in es.values())
  assert es['train'][0][0].startswith('Acute bronchitis, case') and 'Dr. [NAME]' in es['train'][0][1]
  with pytest.raises(ValueError, match='holds pairs into de, es'):
    text_prepare.load_pairs('pairs', str(out), 'fr')
  c = translate_text.get_config('test_seq2seq')
  c.data.pairs, c.data.data_dir, c.data.languages = 'tfds:pairs', str(out), ('es', 'de')
  data = text_pairs.TextPairs(c.data, None)
  assert {k for *_, k in data.splits['train']} == {'es', 'de'}
  assert data.splits['train'][0][1] in (' Spanish:', ' German:')
  task = registry.build_task(c)
  assert set(registry.build_evaluators(c, task, data)) >= {'test'}   # the translation scores accept the pairs
  with pytest.raises(ValueError, match='name the target language'):
    text_prepare.Options(target_field='translation')

"""clinosim notes → ICD-10-CM categories: the phrase masker, a small real simulation read into the coding task
(no diagnosis name left in any note, patients whole on one side of the split, the cache reused) and a
training run of the test variant on it."""

import collections
import json

import pytest

from aigc_jax import experiment
from aigc_jax.text import clinosim_notes
from aigc_jax.text import coding
from aigc_jax.text import corpora
from configs import text_coding


def test_the_masker_replaces_the_longest_known_phrase_ignoring_case_and_spacing():
  mask = clinosim_notes.PhraseMasker({'Essential (primary) hypertension': 'I10', 'hypertension': 'I1x',
                                      'Type 2 diabetes mellitus without complications': 'E11',
                                      'Type 2 diabetes mellitus': 'E11x'}, mask='#')
  text = ('Follow-up: ESSENTIAL (primary)\n hypertension, type 2 diabetes mellitus   without complications. '
          'Hypertensive urgency excluded; hypertension controlled.')
  out, keys = mask(text)
  assert out == 'Follow-up: #, #. Hypertensive urgency excluded; # controlled.'
  assert keys == {'I10', 'E11', 'I1x'}        # 'Hypertensive' is another word, not a match
  assert mask('nothing to hide') == ('nothing to hide', set())
  assert mask('type 2 diabetes')[0] == 'type 2 diabetes'   # a prefix of a phrase is not the phrase


@pytest.fixture(scope='module')
def simulation(tmp_path_factory):
  """The test variant's simulation (200 patients over two months, ~8 s), into a folder of its own."""
  settings = dict(text_coding.get_config('test_clinosim').data.clinosim)
  settings['cache_dir'] = str(tmp_path_factory.mktemp('clinosim'))
  return settings


def test_notes_keep_no_diagnosis_name_and_patients_stay_on_one_side(simulation):
  c = text_coding.get_config('test_clinosim').data
  splits, names = coding.load('clinosim_notes', min_count=c.min_count, val_fraction=c.val_fraction,
                              test_fraction=c.test_fraction, clinosim=simulation)
  folder = clinosim_notes.simulate(**simulation)
  encounters = clinosim_notes.encounters(folder)
  assert sum(map(len, splits.values())) == len(encounters) > 80
  # Every way the simulation names a label's condition, and the raw notes do name them.
  spelled = collections.defaultdict(set)
  for code, title in corpora.icd10cm_titles().items():
    spelled[clinosim_notes.category(code)].add(title.lower())
  for code, name in clinosim_notes.code_table_names():
    spelled[clinosim_notes.category(code)].add(name.lower())
  for _, text, codes in encounters:
    low = text.lower()
    assert not [n for c in codes for n in spelled[c] if n in low]
  assert all(clinosim_notes.MASK in text for _, text, _ in encounters[:50])
  assert len(names) == text_coding.get_config('test_clinosim').model.num_labels
  assert {'I10', 'E78'} <= set(names) and all('.' not in n for n in names)     # categories
  raw = ' '.join(json.dumps(json.loads(p.read_text())) for p in
                 sorted((folder / 'cif' / 'narratives' / 'template' / 'documents').rglob('*.json'))[:20])
  assert 'hypertension' in raw.lower()                                          # the masking did something
  # The encounter's own diagnosis is always a label; a patient's encounters share one split.
  rows = clinosim_notes._read_csv(folder / 'csv' / 'diagnoses.csv')
  by_patient = collections.defaultdict(set)
  for group, _, codes in encounters:
    by_patient[group].add(corpora.split_of(group, c.val_fraction, c.test_fraction))
  assert all(len(s) == 1 for s in by_patient.values()) and len(by_patient) > 20
  assert {clinosim_notes.category(r['discharge_diagnosis_code']) for r in rows} >= \
      {code for _, _, codes in encounters for code in codes} - set().union(*map(set, (
          [clinosim_notes.category(c) for c in r['chronic_conditions'].split('|')]
          for r in clinosim_notes._read_csv(folder / 'csv' / 'patients.csv'))))
  # A second read simulates nothing: the cache folder is the same, and is complete.
  assert clinosim_notes.simulate(**simulation) == folder and (folder / 'DONE').exists()


def test_an_incomplete_simulation_is_named_with_the_fix(tmp_path):
  broken = tmp_path / 'clinosim-x'
  (broken / 'csv').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='diagnoses.csv is missing.*Delete'):
    clinosim_notes.encounters(broken)
  with pytest.raises(ValueError, match='needs config.data.clinosim'):
    coding.load('clinosim_notes', min_count=1, val_fraction=0.1, test_fraction=0.1)


def test_the_test_variant_trains_and_scores_on_the_notes(simulation, tmp_path):
  c = text_coding.get_config('test_clinosim')
  c.data.clinosim.cache_dir = simulation['cache_dir']
  experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  logged = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/micro_f1' in r][-1]
  assert 0 <= test['test/micro_f1'] <= 1 and test['test/labels_scored'] > 0

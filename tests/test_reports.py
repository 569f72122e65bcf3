"""Findings → impression: the negation-aware findings extractor on hand-written sentences and on the IU
reports' MeSH headings, the report metrics against hand computations, and the baselines command."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from aigc_jax import experiment
from aigc_jax.data import text_pairs
from aigc_jax.text import corpora
from aigc_jax.text import findings
from aigc_jax.text import report_metrics
from aigc_jax.text import reports
from aigc_jax.text import tokenizer
from configs import lm_gpt
from configs import report_text


@pytest.mark.parametrize('sentence, expected', [
    ('No nodule.', {'nodule': False}),
    ('Lungs are clear without effusion.', {'pleural_effusion': False}),
    ('No pneumothorax, pleural effusion or focal consolidation.',
     {'pneumothorax': False, 'pleural_effusion': False, 'opacity': False}),
    ('No effusion, but a 1 cm nodule in the right upper lobe.', {'pleural_effusion': False, 'nodule': True}),
    ('There is no evidence of pneumothorax. Mild cardiomegaly.', {'pneumothorax': False, 'cardiomegaly': True}),
    ('Pneumothorax is not seen.', {'pneumothorax': False}),
    ('The left effusion has resolved.', {'pleural_effusion': False}),
    ('Cannot exclude pneumonia in the right base.', {'pneumonia': True}),
    ('Stable calcified granulomas. Thoracic levoscoliosis.', {'granuloma': True, 'scoliosis': True}),
    ('Small bilateral pleural effusions; no edema.', {'pleural_effusion': True, 'edema': False}),
    ('No acute cardiopulmonary abnormality.', {}),
    ('No effusion. Nodular opacity in the left base.', {'pleural_effusion': False, 'nodule': True, 'opacity': True}),
])
def test_findings_extractor_reads_negations_and_their_scope(sentence, expected):
  assert findings.extract(sentence) == expected


def test_findings_extractor_agrees_with_the_iu_indexers():
  docs = corpora.iu_reports()
  table = findings.agreement([findings.positives(f"{d.fields['findings']} {d.fields['impression']}") for d in docs],
                             [findings.mesh_findings(d.labels) for d in docs])
  assert table['micro']['support'] > 2_000
  assert table['micro']['f1'] > 0.85 and table['macro']['f1'] > 0.8       # docs/text.md: 0.90 / 0.86
  assert findings.mesh_findings(['Opacity/lung/base/left', 'Cardiomegaly/mild', 'normal']) == \
      {'opacity', 'cardiomegaly'}


def test_normalize_follows_the_iu_cleaning():
  assert report_metrics.normalize('No effusion.  1. Clear lungs, no edema.') == 'no effusion . clear lungs no edema .'
  assert report_metrics.normalize('1. Heart size normal') == 'heart size normal .'
  assert report_metrics.normalize('...') == ''


def test_ngram_scores_match_a_hand_computation():
  # After normalization: 'the cat sat on the mat .' vs 'the cat is on the mat .' — 7 tokens each (no brevity
  # penalty), 6 of 7 unigrams and 4 of 6 bigrams match, the longest common subsequence is 6 tokens.
  s = report_metrics.ngram_scores(['The cat is on the mat.'], ['The cat sat on the mat.'])
  assert s['bleu_1'] == pytest.approx(6 / 7, rel=1e-6)
  assert s['bleu_2'] == pytest.approx((6 / 7 * 4 / 6) ** 0.5, rel=1e-6)
  assert s['rouge_l'] == pytest.approx(6 / 7, rel=1e-6)        # P = R, so the F-measure is 6/7 for any β
  same = report_metrics.scores(['No acute disease.', 'Small left effusion.'], ['No acute disease.',
                                                                              'Small left effusion.'])
  assert same['bleu_4'] == pytest.approx(1.0) and same['rouge_l'] == 1.0 and same['clinical_f1'] == 1.0
  with pytest.raises(ValueError, match='pair up'):
    report_metrics.ngram_scores(['a'], ['a', 'b'])


def test_clinical_scores_count_findings_not_words():
  s = report_metrics.clinical_scores(['Cardiomegaly. Small effusion.', 'No effusion.'],
                                     ['Cardiomegaly without effusion.', 'Small effusion.'])
  # generated: {cardiomegaly}, {effusion}; reference: {cardiomegaly, effusion}, {}
  assert s['clinical_precision'] == 0.5 and s['clinical_recall'] == 0.5


def test_baselines_retrieve_and_repeat():
  sources = ['heart enlarged lungs clear', 'small left effusion', 'normal heart and lungs']
  targets = ['Cardiomegaly.', 'Effusion.', 'Normal.']
  assert reports.nearest(sources, targets, ['left effusion small', 'lungs clear heart enlarged']) == \
      ['Effusion.', 'Cardiomegaly.']
  assert reports.most_frequent(['b', 'a', 'a', 'b', 'c'], 2) == ['b', 'b']     # a tie: the first seen


def test_the_baseline_command_scores_the_held_out_pairs(tmp_path):
  subprocess.run([sys.executable, '-m', 'aigc_jax.baseline', '--config=configs/report_text.py:runlocal',
                  f'--out={tmp_path}/b.json'], check=True, capture_output=True,
                 cwd=os.path.dirname(os.path.dirname(__file__)))
  base = json.loads((tmp_path / 'b.json').read_text())
  assert base['documents']['test'] > 300 and base['documents']['train'] > 2_500
  assert base['nearest_tfidf']['bleu_4'] > base['most_frequent']['bleu_4']
  assert base['most_frequent']['clinical_f1'] == 0.0                         # "No acute …" names no finding
  assert base['copy_findings']['clinical_recall'] > base['nearest_tfidf']['clinical_recall']
  assert base['extractor_vs_mesh']['micro']['f1'] > 0.8


def test_pair_rows_learn_the_impression_only_and_prompts_are_left_padded():
  c = report_text.get_config('test')
  data = text_pairs.TextPairs(c.data)
  rows, tok = data.rows('validation'), data.tokenizer
  _, _, impression, _ = data.splits['validation'][0]
  mask = rows['loss_mask'][0] > 0
  learned = rows['tokens'][0][1:][mask[:-1]]                        # the tokens the masked positions predict
  assert learned[-1] == tokenizer.EOS or len(learned) == c.data.target_len      # cut at target_len: no EOS
  assert impression.startswith(tok.decode(learned[learned != tokenizer.EOS]).strip())
  assert tok.decode(rows['tokens'][0][:np.flatnonzero(mask)[0] + 1]).startswith('FINDINGS:')
  assert tok.decode(rows['tokens'][0][:np.flatnonzero(mask)[0] + 1]).endswith('IMPRESSION:')
  inputs, refs, keys = data.prompts('validation')
  prompts, start = inputs['prompt'], inputs['start']
  assert prompts.shape[1] == c.data.prompt_len and refs[0] == impression and keys[0] == 'report'
  assert (prompts[0, :start[0]] == tokenizer.PAD).all() and tok.decode(prompts[0, start[0]:]).endswith('IMPRESSION:')
  with pytest.raises(ValueError, match='prompt_len \\+ target_len'):
    text_pairs.TextPairs(ml_collections.ConfigDict({**c.data.to_dict(), 'seq_len': 99}))


def test_the_generator_fine_tunes_from_a_language_model_and_scores_the_test_pairs(tmp_path):
  lm = lm_gpt.get_config('test')
  lm.evals = {}
  lm.optim.ema_decay = 0.0
  experiment.train_and_evaluate(lm, str(tmp_path / 'lm'))
  c = report_text.get_config('test')
  c.init_from = str(tmp_path / 'lm')
  experiment.train_and_evaluate(c, str(tmp_path / 'gen'))
  logged = [json.loads(line) for line in open(tmp_path / 'gen' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/bleu_4' in r][-1]
  assert 0 <= test['test/bleu_4'] <= 1 and 0 <= test['test/clinical_f1'] <= 1
  written = (tmp_path / 'gen' / 'test' / 'generated_0000004.txt').read_text()
  assert written.count('reference: ') == c.evals.test.num

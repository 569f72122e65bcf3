"""Automatic coding: the BCE, the metrics against scikit-learn, the labelled text source, fine-tuning from a
language model with a fresh head, and the TF-IDF baseline command."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from aigc_jax import experiment
from aigc_jax.core import checkpoint
from aigc_jax.data import text
from aigc_jax.evals import multilabel
from aigc_jax.objectives import binary
from aigc_jax.tasks import text_classification
from aigc_jax.text import baselines
from aigc_jax.text import coding
from configs import lm_gpt
from configs import text_coding


def test_bce_matches_the_formula_and_optax_and_stays_finite():
  z = jnp.array([[-3.0, -0.5, 0.0, 0.7, 4.0]])
  y = jnp.array([[0.0, 1.0, 1.0, 0.0, 1.0]])
  p = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
  hand = -(np.asarray(y) * np.log(p) + (1 - np.asarray(y)) * np.log(1 - p))
  np.testing.assert_allclose(binary.binary_cross_entropy(z, y), hand, rtol=1e-6)
  np.testing.assert_allclose(binary.binary_cross_entropy(z, y), optax.sigmoid_binary_cross_entropy(z, y), rtol=1e-6)
  far = binary.binary_cross_entropy(jnp.array([60.0, -60.0]), jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(far, [60.0, 60.0], rtol=1e-6)           # the naive formula gives inf here
  mask = jnp.array([[1, 1, 0, 0, 1]])
  np.testing.assert_allclose(binary.mean_over_labels(binary.binary_cross_entropy(z, y, mask), mask),
                             hand[0, [0, 1, 4]].mean(), rtol=1e-6)


def test_softmax_loss_matches_optax_spreads_over_labels_and_skips_unknown_ones():
  logits = 3.0 * jax.random.normal(jax.random.key(0), (4, 6))
  y = np.zeros((4, 6), np.float32)
  y[0, 2] = y[1, 5] = 1                  # one label each
  y[2, [1, 4]] = 1                       # two: the target is spread over them
  loss, aux = text_classification.softmax_loss_and_top1(logits, y)          # row 3: no label, no loss
  logp = np.asarray(jax.nn.log_softmax(logits))
  np.testing.assert_allclose(loss[:2], optax.softmax_cross_entropy(logits[:2], y[:2]), rtol=1e-6)
  np.testing.assert_allclose(loss[2], -(logp[2, 1] + logp[2, 4]) / 2, rtol=1e-6)
  assert loss[3] == 0
  top = np.asarray(jnp.argmax(logits, -1))
  np.testing.assert_array_equal(aux['top1_accuracy'], [y[i, top[i]] for i in range(4)])
  # An unknown label is no candidate: a huge logit there changes nothing.
  mask = np.ones_like(y)
  mask[:, 0] = 0
  bumped = logits.at[:, 0].set(50.0)
  masked, aux = text_classification.softmax_loss_and_top1(bumped, y, mask)
  np.testing.assert_allclose(masked[:2], optax.softmax_cross_entropy(logits[:2, 1:], y[:2, 1:]), rtol=1e-5)
  known_top = np.asarray(jnp.argmax(logits[:, 1:], -1)) + 1
  np.testing.assert_array_equal(aux['top1_accuracy'], [y[i, known_top[i]] for i in range(4)])


def test_the_softmax_task_scores_probabilities_that_sum_to_one():
  c = text_coding.get_config('test')
  c.task.loss = 'softmax'
  task = text_classification.TextClassificationTask(c)
  rows = text.LabelledText(c.data).rows('validation')
  batch = {k: v[:4] for k, v in rows.items()}
  params = task.init(jax.random.key(0), batch)
  p = np.asarray(task.probabilities(params, batch))
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
  loss, aux = task.loss(params, batch, None)            # the trainer's path: `loss` is still the method
  want, _ = text_classification.softmax_loss_and_top1(task.predict(params, batch), batch['labels'])
  assert loss == pytest.approx(float(want.mean()), rel=1e-5) and 'top1_accuracy' in aux
  c.task.loss = 'hinge'
  with pytest.raises(ValueError, match="config.task.loss='hinge'"):
    text_classification.TextClassificationTask(c)


def test_metrics_match_scikit_learn():
  rng = np.random.default_rng(0)
  y = (rng.random((200, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.0]).astype(np.float32)
  scores = np.round(np.clip(y * 0.3 + rng.random(y.shape) * 0.8, 0, 1), 2)   # rounded: ties on purpose
  pred = scores >= 0.5
  f1 = multilabel.f1_scores(y, pred)
  assert f1['micro_f1'] == pytest.approx(skm.f1_score(y, pred, average='micro', zero_division=0))
  assert f1['macro_f1'] == pytest.approx(skm.f1_score(y, pred, average='macro', zero_division=0))
  assert f1['micro_precision'] == pytest.approx(skm.precision_score(y, pred, average='micro', zero_division=0))
  assert f1['micro_recall'] == pytest.approx(skm.recall_score(y, pred, average='micro', zero_division=0))
  p_mac = skm.precision_score(y, pred, average='macro', zero_division=0)
  r_mac = skm.recall_score(y, pred, average='macro', zero_division=0)
  assert f1['macro_f1_of_means'] == pytest.approx(2 * p_mac * r_mac / (p_mac + r_mac))
  assert f1['macro_f1_of_means'] != pytest.approx(f1['macro_f1'])   # the two macro variants differ
  aucs = multilabel.per_label_auroc(y, scores)
  for k in range(5):
    assert aucs[k] == pytest.approx(skm.roc_auc_score(y[:, k], scores[:, k]))
  assert np.isnan(aucs[5])                                          # no positive: not scored
  assert multilabel.precision_at_k(np.array([[1, 0, 1], [0, 0, 1]]), np.array([[.9, .8, .1], [.2, .3, .1]]),
                                   2) == pytest.approx((1 / 2 + 0 / 2) / 2)
  t = multilabel.best_global_threshold(y, scores)
  assert multilabel.f1_scores(y, scores >= t)['micro_f1'] >= f1['micro_f1']


def test_nearest_baseline_scores_each_label_by_its_most_similar_training_document():
  train = ['typhoid fever with heart involvement', 'salmonella enteritis', 'cholera due to vibrio',
           'acute typhoid myocarditis', 'infection due to salmonella typhi']
  y_train = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 1, 0]], np.float64)
  held = ['typhoid myocarditis', 'enteritis by salmonella', 'vibrio cholera']
  y_held = np.eye(3)
  _, probs = baselines.tfidf_nearest({'train': (train, y_train), 'validation': (held, y_held),
                                      'test': (held, y_held)})
  vec = baselines.FeatureUnion([('w', baselines.TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                                ('c', baselines.TfidfVectorizer(analyzer='char_wb', ngram_range=(3, 5),
                                                                sublinear_tf=True))]).fit(train)
  unit = lambda m: (lambda a: a / np.linalg.norm(a, axis=1, keepdims=True))(m.toarray())
  cos = unit(vec.transform(held)) @ unit(vec.transform(train)).T
  hand = np.array([[cos[i, y_train[:, k] > 0].max() for k in range(3)] for i in range(3)])
  np.testing.assert_allclose(probs['test'], hand, rtol=1e-9)
  assert (probs['test'].argmax(1) == [0, 1, 2]).all()


def test_icd10cm_terms_hold_out_phrases_never_seen_in_training():
  c = text_coding.get_config('runlocal_icd10cm').data
  splits, names = coding.load('icd10cm_terms', min_count=c.min_count, val_fraction=c.val_fraction,
                              test_fraction=c.test_fraction)
  assert len(names) == text_coding.get_config('runlocal_icd10cm').model.num_labels
  seen = {t.lower() for t, _ in splits['train']}
  assert len(splits['test']) > 2_000 and not any(t.lower() in seen for t, _ in splits['test'])
  assert ('Typhoid myocarditis', ('A01',)) in splits['test'] + splits['validation'] + splits['train']
  assert all(len(y) == 1 and y[0] in names and '.' not in y[0] for _, y in splits['test'])
  assert ('Typhoid fever with heart involvement', ('A01',)) in splits['train']      # a title: training


def test_labelled_rows_carry_the_reports_headings():
  config = text_coding.get_config('test').data
  data = text.LabelledText(config)
  rows = data.rows('validation')
  splits, names = coding.load('iu_mesh', min_count=config.min_count, val_fraction=config.val_fraction,
                              test_fraction=config.test_fraction)
  assert names == data.label_names and len(rows['labels']) == len(splits['validation'])
  for i in (0, 7, 30):
    heads = set(splits['validation'][i][1])
    assert {n for n, v in zip(names, rows['labels'][i]) if v} == heads & set(names)
  real = rows['segment_ids'].sum(1)
  assert real.max() == config.seq_len and real.min() > 0                # long reports are cut at seq_len
  assert (rows['tokens'][rows['segment_ids'] == 0] == 0).all()


def test_padchest_trains_on_the_labeller_and_tests_on_the_physicians():
  c = text_coding.get_config('runlocal_padchest')
  splits, names = coding.load('padchest', min_count=c.data.min_count, val_fraction=c.data.val_fraction,
                              test_fraction=c.data.test_fraction)
  assert len(names) == c.model.num_labels and '' not in names and {'normal', 'cardiomegaly'} <= set(names)
  studies = coding.padchest_studies()
  physician = [(t, y) for _, t, y, doc in studies if doc]
  assert splits['test'] == physician and len(physician) > 26_000     # all of them, and nothing else
  groups = {s: {g for g, _, _, doc in studies if not doc and coding.corpora.split_of(g, c.data.val_fraction, 0)
                == s} for s in ('train', 'validation')}
  assert not groups['train'] & groups['validation']                  # validation patients never trained on
  assert len(splits['train']) + len(splits['validation']) == len(studies) - len(physician)
  seen = {t for t, _ in splits['train']}
  assert splits['test_unseen'] and all(t not in seen for t, _ in splits['test_unseen'])
  assert len(splits['test_unseen']) < 0.7 * len(splits['test'])      # verbatim repeats are common: see docs
  assert all(g.startswith('padchest:') and len(g) == 17 for g, _, _, _ in studies[:100])   # a hash, not the id


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('lm') / 'gpt')
  c = lm_gpt.get_config('test')
  c.evals = {}
  c.optim.ema_decay = 0.0   # its EMA params are its params: what init_from loads into the fine-tuned params
  experiment.train_and_evaluate(c, workdir)
  return workdir


def test_fine_tuning_loads_the_language_model_and_a_fresh_head(pretrained, tmp_path):
  c = text_coding.get_config('test')
  c.init_from = pretrained
  c.optim.learning_rate = 0.0       # nothing moves: the finished params are the loaded ones
  c.evals = {}
  experiment.train_and_evaluate(c, str(tmp_path / 'ft'))
  _, _, tuned, _ = experiment.load_run(str(tmp_path / 'ft'))
  _, _, lm, _ = experiment.load_run(pretrained)
  assert set(tuned) == set(lm) | {'cls_head'}
  for k in lm:  # equal up to the last bit the EMA update's arithmetic may touch
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12), tuned[k], lm[k])
  assert open(os.path.join(str(tmp_path / 'ft'), 'tokenizer.json')).read() == \
      open(os.path.join(pretrained, 'tokenizer.json')).read()
  c.model.width = 64                # another architecture: refused, the head rule excuses nothing else
  c.data.tokenizer = pretrained
  c.init_from = pretrained
  with pytest.raises(checkpoint.CheckpointMismatch, match='do not fit'):
    experiment.train_and_evaluate(c, str(tmp_path / 'bad'))


def test_the_pretrained_tokenizer_alone_starts_from_random_weights(pretrained, tmp_path):
  # The from-scratch arm of pretrain-vs-scratch: same tokenizer, no weights (a config reference between
  # data.tokenizer and init_from once loaded both).
  c = text_coding.get_config('test')
  c.data.tokenizer = pretrained
  c.optim.learning_rate = 0.0
  c.evals = {}
  experiment.train_and_evaluate(c, str(tmp_path / 'scratch'))
  saved, _, scratch, _ = experiment.load_run(str(tmp_path / 'scratch'))
  _, _, lm, _ = experiment.load_run(pretrained)
  assert not saved.init_from
  assert not np.allclose(scratch['embed']['embedding'], lm['embed']['embedding'])
  assert open(os.path.join(str(tmp_path / 'scratch'), 'tokenizer.json')).read() == \
      open(os.path.join(pretrained, 'tokenizer.json')).read()


def test_coding_run_and_baseline_command_score_the_same_test_split(tmp_path):
  c = text_coding.get_config('test')
  experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  logged = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/micro_f1' in r][-1]
  assert 0 <= test['test/micro_f1'] <= 1 and test['test/labels_scored'] > 0
  assert os.path.exists(tmp_path / 'run' / 'test' / 'labels_0000004.txt')
  out = tmp_path / 'baseline.json'
  subprocess.run([sys.executable, '-m', 'aigc_jax.baseline', '--config=configs/text_coding.py:test',
                  f'--out={out}'], check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  base = json.loads(out.read_text())
  assert base['labels'] == c.model.num_labels
  assert base['documents']['test'] == len(text.LabelledText(c.data).rows('test')['labels'])
  assert base['micro_f1'] > 0.6 and base['auroc_macro'] > 0.85   # TF-IDF reads real reports well

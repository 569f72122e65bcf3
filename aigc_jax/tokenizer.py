r"""Command line: train a subword tokenizer on the training split of the built-in corpora, as one JSON file.

  python -m aigc_jax.tokenizer --corpora=icd10cm,iu_reports --kind=bpe --vocab_size=8192 --out=runs/bpe8k.json

Give the file to a run with `--config.data.tokenizer=runs/bpe8k.json` (several runs then share one
vocabulary, as pretraining and fine-tuning must). A run given no file trains its own at the first start with
the same code, on the same split; either way the run keeps a copy as `<workdir>/tokenizer.json`.
"""

import json

from absl import app
from absl import flags

from aigc_jax.text import corpora
from aigc_jax.text import tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_list('corpora', ['icd10cm', 'iu_reports'], f'Built-in corpora to train on: {", ".join(corpora.CORPORA)}.')
flags.DEFINE_enum('kind', 'bpe', tokenizer.KINDS, 'bpe: byte-level BPE (causal models); wordpiece: BERT\'s.')
flags.DEFINE_integer('vocab_size', 8192, 'Largest vocabulary, special tokens included.')
flags.DEFINE_float('val_fraction', 0.05, 'Held-out shares, as config.data.val_fraction: their text is not '
                   'trained on.')
flags.DEFINE_float('test_fraction', 0.05, 'As config.data.test_fraction.')
flags.DEFINE_string('out', None, 'The tokenizer file to write.')
flags.mark_flags_as_required(['out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  docs = corpora.split(corpora.load(FLAGS.corpora), 'train', FLAGS.val_fraction, FLAGS.test_fraction)
  tok = tokenizer.train([d.text for d in docs], FLAGS.kind, FLAGS.vocab_size)
  tok.save(FLAGS.out)
  print(json.dumps({'out': FLAGS.out, 'documents': len(docs), **tokenizer.describe(tok)}))


if __name__ == '__main__':
  app.run(main)

"""What the trainer writes for TensorBoard is what the installed viewer reads (`tensorboard --logdir runs`)."""

import json
import os

import numpy as np

from aigc_jax.core import reporting


def test_tensorboard_viewer_reads_our_scalars_and_images(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  writer = reporting.Writer(str(tmp_path))
  for step in (1, 2, 3):
    writer.scalars(step, {'train/loss': 1.0 / step, 'eval/psnr_db': 30.0 + step})
  writer.image(3, 'samples/samples', np.full((8, 12, 3), 0.5, np.float32))
  writer.close()
  acc = event_accumulator.EventAccumulator(os.path.join(tmp_path, 'tensorboard'),
                                           size_guidance={event_accumulator.SCALARS: 0,
                                                          event_accumulator.IMAGES: 0})
  acc.Reload()
  assert set(acc.Tags()['scalars']) == {'train/loss', 'eval/psnr_db'}
  loss = acc.Scalars('train/loss')
  assert [e.step for e in loss] == [1, 2, 3]
  np.testing.assert_allclose([e.value for e in loss], [1.0, 0.5, 1.0 / 3], rtol=1e-6)
  image, = acc.Images('samples/samples')
  assert (image.step, image.width, image.height) == (3, 12, 8)
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]  # the same scalars, without TensorBoard
  assert [r['step'] for r in rows] == [1, 2, 3] and rows[1]['train/loss'] == 0.5

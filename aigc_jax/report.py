r"""Writes the report of CT slices with a trained image → report run (configs/report_image.py).

  python -m aigc_jax.report --workdir=runs/report_image --input=SCANS [--max_slices=4] > reports.jsonl
  python -m aigc_jax.report --workdir=runs/report_image --input=slice.png --png_window=-1000,1000

--input: a folder of DICOM series / NIfTI volumes (CT, read as `aigc_jax.prepare` reads them; up to
--max_slices evenly spaced slices per series), or a PNG file or folder of PNGs (8-bit grey levels that stand
for the HU range --png_window; a PNG has no pixel size). Each slice is put at the model's pixel size when its
header gives one (the phantom's 400 mm over config.data.image_size pixels: 6.25 mm at 64, so a nodule keeps its
size in mm), else fitted to the model's field of view, and served in the run's HU windows. The report is written
by beam search (--beam, --length_penalty) from the newest checkpoint's parameters.

Output: one JSON object per slice, {"slice": "series_0_slice_12", "report": "...", "pixel_size_mm": 6.25} (or
"fitted": true when no pixel size was known). Slices are named by their place, never by anything from their
headers or file names, so no identifier reaches the output.

The model has seen phantom slices only (docs/reports.md says what it reads and how well): on real scans it is
a demonstration of the plumbing, not a diagnostic tool.
"""

import json
import os
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import image_reports  # noqa: E402
from aigc_jax.evals import generation  # noqa: E402
from aigc_jax.imaging import geometry  # noqa: E402
from aigc_jax.imaging import scans  # noqa: E402
from aigc_jax.text import slice_reports  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained image → report run (configs/report_image.py).')
  flags.DEFINE_string('input', None, 'A folder of DICOM series / NIfTI volumes, or a PNG file or folder of PNGs.')
  flags.DEFINE_string('output', '-', 'Where the reports go, one JSON object per line; - writes stdout.')
  flags.DEFINE_integer('max_slices', 4, 'Slices per series, evenly spaced.')
  flags.DEFINE_string('png_window', '-1000,1000', 'The HU range that a PNG\'s grey levels 0…255 stand for.')
  flags.DEFINE_integer('beam', 4, 'Beam width (1: greedy).')
  flags.DEFINE_float('length_penalty', 0.6, 'GNMT length normalization of the beam\'s final choice.')
  flags.DEFINE_integer('batch', 16, 'Slices per compiled decoding call.')


class Reporter:
  """The newest parameters of an image → report run, as a function of HU slices → reports."""

  def __init__(self, workdir: str, *, beam: int = 4, length_penalty: float = 0.6):
    config, self.task, self.params, self.step, self.data = experiment.load_run(workdir, with_data=True)
    if config.data.name != 'phantom_reports':
      raise ValueError(f'--workdir={workdir!r} trained {config.data.name!r}; give an image → report run '
                       '(python -m aigc_jax.main --config=configs/report_image.py ...).')
    self.size = int(config.data.image_size)
    self.pixel_mm = slice_reports.FOV_MM / self.size
    self.windows = tuple(tuple(w) for w in config.data.windows)
    self._generate = generation.decoder(self.task, config.data.target_len, beam, length_penalty)

  def fit(self, hu: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, bool]:
    """(the slice at the model's pixel size and field of view, whether it had to be fitted without one)."""
    air = -1000.0
    try:
      return geometry.at_pixel_size(hu, spacing, self.pixel_mm, self.size, fill=air), False
    except geometry.NoSpacing:
      return geometry.fit_square(hu, self.size, fill=air)[0], True

  def __call__(self, slices: list[np.ndarray], batch: int = 16) -> list[str]:
    """Reports of HU slices already at the model's size [H, W] each."""
    image = image_reports.images(np.stack(slices).astype(np.float32), self.windows)
    return generation.write(self._generate, self.params, self.data, self.data.inputs_for(image), batch)


def read_png(path: str, window: tuple[float, float]) -> np.ndarray:
  """A greyscale PNG → HU, grey levels 0…255 spread over `window`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      grey = np.asarray(im.convert('L'), np.float32)
  except (OSError, ValueError) as e:
    raise ValueError(f'a PNG under --input cannot be read ({type(e).__name__}); give 8-bit greyscale PNGs.') from None
  return window[0] + grey / 255.0 * (window[1] - window[0])


def input_slices(path: str, max_slices: int, png_window: tuple[float, float]
                 ) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
  """(name, HU slice, (row, col) spacing or zeros) of every slice to report on."""
  if os.path.isfile(path) and path.lower().endswith('.png'):
    return [('png_0', read_png(path, png_window), (0.0, 0.0))]
  if not os.path.isdir(path):
    raise ValueError(f'--input={path!r} is neither a folder nor a .png file.')
  pngs = sorted(os.path.join(root, f) for root, _, files in os.walk(path) for f in files if f.lower().endswith('.png'))
  if pngs and not any(f for _, _, files in os.walk(path) for f in files if not f.lower().endswith('.png')):
    return [(f'png_{i}', read_png(p, png_window), (0.0, 0.0)) for i, p in enumerate(pngs)]
  return scans.spaced_slices(path, max_slices)


def report(workdir: str, input_path: str, *, max_slices: int = 4, png_window: tuple[float, float] = (-1000.0, 1000.0),
           beam: int = 4, length_penalty: float = 0.6, batch: int = 16) -> list[dict]:
  """One {'slice', 'report', 'pixel_size_mm' or 'fitted'} per slice under `input_path` (see the module doc)."""
  found = input_slices(input_path, max_slices, png_window)
  reporter = Reporter(workdir, beam=beam, length_penalty=length_penalty)
  fitted = [reporter.fit(hu, spacing) for _, hu, spacing in found]
  out = []
  for (name, _, _), (_, was_fitted), text in zip(found, fitted, reporter([f for f, _ in fitted], batch)):
    out.append({'slice': name, 'report': text, **({'fitted': True} if was_fitted else
                                                  {'pixel_size_mm': reporter.pixel_mm})})
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  try:
    lo, hi = (float(v) for v in FLAGS.png_window.split(','))
    if lo >= hi:
      raise ValueError
  except ValueError:
    raise app.UsageError(f'--png_window={FLAGS.png_window!r}: give two HU values "low,high", low < high.') from None
  try:
    rows = report(FLAGS.workdir, FLAGS.input, max_slices=FLAGS.max_slices, png_window=(lo, hi), beam=FLAGS.beam,
                  length_penalty=FLAGS.length_penalty, batch=FLAGS.batch)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  text = ''.join(json.dumps(row) + '\n' for row in rows)
  if FLAGS.output == '-':
    sys.stdout.write(text)
  else:
    with open(FLAGS.output, 'w', encoding='utf-8') as f:
      f.write(text)


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  flags.mark_flag_as_required('input')
  app.run(runtime.exits_cleanly(main))

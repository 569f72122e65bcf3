"""Orbax's noise when a checkpoint operation fails, cut down to the one message our code raises.

A failed save or restore is re-raised in the caller's thread, where `checkpoint` turns it into one clear
message; meanwhile orbax's threads log a traceback each, asyncio one per unfinished write, and the work left
unfinished prints "Exception ignored" tracebacks when it is collected or finds its event loop closed. The
commands install `quiet_background_tracebacks` before any save; `checkpoint` calls
`collect_abandoned_work` after a failed restore or save.
"""

import functools
import gc
import logging as std_logging
import os
import re
import sys
import traceback
from typing import Any, Callable


def collect_abandoned_work() -> None:
  """A failed restore or save leaves orbax's work on the other arrays unfinished: coroutines that the garbage
  collector closes later, and tensorstore callbacks that find their event loop closed. Python prints an
  'Exception ignored' traceback for each; the error is already reported, so those are muted from now on and
  the coroutines collected at once."""
  mute_orbax_leftovers()
  gc.collect()


def mute_orbax_leftovers() -> None:
  """Wraps sys.unraisablehook (once) in `_unless_orbax_leftover`, which lets everything else through."""
  if not getattr(sys.unraisablehook, 'mutes_orbax_leftovers', False):
    sys.unraisablehook = functools.partial(_unless_orbax_leftover, sys.unraisablehook)
    sys.unraisablehook.mutes_orbax_leftovers = True


def _unless_orbax_leftover(hook: Callable[[Any], None], unraisable: Any) -> None:
  """Calls `hook` except for what an orbax operation that failed leaves behind: its coroutines, closed
  unfinished, and callbacks of its threads that find their event loop closed."""
  code = getattr(unraisable.object, 'cr_code', None)
  if code is not None and _in_orbax(code.co_filename):
    return
  if isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(unraisable.exc_value):
    return
  hook(unraisable)


class OneLineLibraryErrors(std_logging.Filter):
  """Orbax logs a failed background save with a traceback from each of its threads, and asyncio one more for
  each of its unfinished writes ("Task exception was never retrieved"), while the error itself is re-raised in
  our thread, where it becomes one SaveFailed message. Orbax's lines keep their first line; asyncio's go."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if not record.exc_info:
      return True
    if record.name == 'asyncio':  # orbax's frames, or tensorstore's error (no Python frames) naming its files
      _, error, tb = record.exc_info
      return not (any(_in_orbax(frame.f_code.co_filename) for frame, _ in traceback.walk_tb(tb))
                  or re.search(r'OCDBT|orbax-checkpoint-tmp', str(error)))
    if _in_orbax(record.pathname or ''):
      record.msg, record.args = first_line(record.getMessage())[:400], None
      record.exc_info = record.exc_text = record.stack_info = None
    return True


def quiet_background_tracebacks() -> None:
  """For the commands, before any save: `OneLineLibraryErrors` on the loggers of absl (orbax logs there) and
  asyncio, and `mute_orbax_leftovers` (a failing save's callbacks print while the error is still on its way)."""
  mute_orbax_leftovers()
  for name in ('absl', 'asyncio'):
    logger = std_logging.getLogger(name)
    if not any(isinstance(f, OneLineLibraryErrors) for f in logger.filters):
      logger.addFilter(OneLineLibraryErrors())


def _in_orbax(filename: str) -> bool:
  return f'{os.sep}orbax{os.sep}' in filename


def first_line(error: Any) -> str:
  """The first line of an error's message (at most 300 characters), or its type when it has none."""
  text = str(error).strip()
  return (text.splitlines() or [type(error).__name__])[0][:300]

"""Preemption: a SIGTERM (or a TPU maintenance notice) makes the run save the current step and stop cleanly.

One process: our own SIGTERM handler sets a flag that the loop reads after each step. Several processes:
JAX's distributed runtime already listens for SIGTERM and the TPU notice, and
`multihost_utils.reached_preemption_sync_point` makes every process agree on one step to save at, so
their checkpoints match. A hard kill (SIGKILL, power loss) cannot be caught: it loses the steps since the
last periodic checkpoint, and the rerun resumes from there exactly.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Watcher:
  """Created before the loop, closed after it; `reached(step)` turns True at the step to save and stop."""

  def __init__(self):
    self._flag = False
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def close(self) -> None:
    """Gives SIGTERM back to whoever had it before (tests run several trainings in one process)."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._flag = True  # only a flag: the loop saves at a step boundary, never mid-step

  def reached(self, step: int) -> bool:
    """Must be called at every step by every process (the multi-process protocol needs each step id)."""
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag

"""Ctrl-C (SIGINT) and SIGTERM: one line instead of a traceback, and a training loop that stops
at a safe point (docs/workdir.md, "Ctrl-C and SIGTERM"). Standard library only.

Python runs a signal handler only when the main thread executes bytecode, and a training run's
main thread spends most of its time inside XLA (a call of steps, a compilation), where a handler
waits for seconds. `StopSignals` therefore also registers a wakeup file descriptor
(`signal.set_wakeup_fd`): the C-level handler writes each signal's number to a pipe the moment
the signal arrives, and a watcher thread reading the pipe acknowledges it on stderr at once and,
on a second signal, ends a command-line process at once.

What a signal does, when:
  outside the training loop (imports, checks, data preparation, the final evaluation, the other
    modes): Ctrl-C is Python's KeyboardInterrupt, which `exit_on_keyboard_interrupt` turns into
    one line on stderr and exit status 130.
  in the loop, before its first call of steps has returned: Ctrl-C raises KeyboardInterrupt (no
    step was trained in this process: nothing to save). SIGTERM stops after that call.
  in the loop after that: the loop stops at the end of the current call of steps and saves a
    checkpoint (train.py).
  a second signal in the loop: the process exits at once, status 128 + the signal (130 for
    Ctrl-C), without waiting for a save in progress (its temporary folder is deleted by the next
    run; the checkpoints already committed are intact). A library caller (`exit_at_once=False`,
    e.g. a notebook) gets KeyboardInterrupt instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import types

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DONE = 0   # the byte that ends the watcher (no signal has number 0)
CTRL_C_STATUS = 128 + signal.SIGINT   # 130: what a shell reports for a command ended by Ctrl-C
INTERRUPTED_MESSAGE = ('error: interrupted (Ctrl-C) before this command finished; what it had '
                       'saved is intact, and the same command starts again (a training run '
                       'resumes from its last checkpoint)')


def signal_name(signum: int) -> str:
  """'Ctrl-C' for SIGINT, else the signal's name ('SIGTERM')."""
  return 'Ctrl-C' if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(signum: int) -> int:
  """The exit status of a process a signal ended: 128 + the signal's number (130 for Ctrl-C)."""
  return 128 + signum


def exit_on_keyboard_interrupt() -> None:
  """Makes a KeyboardInterrupt that reaches the top of this process (Ctrl-C outside the training
  loop) print `INTERRUPTED_MESSAGE` on stderr and exit with status 130, without a traceback.

  For a command-line entry point (main.py); every other exception keeps its traceback.
  """
  previous = sys.excepthook

  def hook(kind: type[BaseException], value: BaseException,
           traceback: types.TracebackType | None) -> None:
    if not issubclass(kind, KeyboardInterrupt):
      previous(kind, value, traceback)
      return
    print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
    # At once, as a second Ctrl-C would: the interpreter's shutdown would wait for threads
    # (data loaders, checkpoint writers) that an interrupted run may have left blocked.
    os._exit(CTRL_C_STATUS)

  sys.excepthook = hook


class StopSignals:
  """SIGINT and SIGTERM while a training loop runs (a context manager; main thread only).

  Attributes:
    signal: the first signal received (its number), or None.
    can_save: set by the loop once its first call of steps has returned: from then on a first
      signal stops the loop at the end of the current call, which saves a checkpoint. Before
      that, Ctrl-C raises KeyboardInterrupt in the main thread (nothing to save yet).
    finishing: set (with can_save cleared) once the final checkpoint is committed, for the final
      evaluation: Ctrl-C raises KeyboardInterrupt there too; SIGTERM lets the outputs be written.

  A Trainer holds one for its whole life (`install` at its first check, `restore` when it
  closes); a `with` block does the same.

  Args:
    exit_at_once: a second signal ends the process at once (`os._exit`, status 128 + signal),
      for a command-line run. False: it raises KeyboardInterrupt in the main thread (a library
      caller, e.g. a notebook, keeps its process).
  """

  def __init__(self, *, exit_at_once: bool = False):
    self.exit_at_once = exit_at_once
    self.signal: int | None = None
    self.can_save = False
    self.finishing = False
    self.received = threading.Event()   # set by the watcher at the first signal
    self._handled = 0
    self._previous: dict[int, object] = {}
    self._watcher: threading.Thread | None = None

  def __enter__(self) -> StopSignals:
    self.install()
    return self

  def __exit__(self, *exc) -> None:
    self.restore()

  def install(self) -> None:
    """Takes over SIGINT and SIGTERM (their previous handlers are kept for `restore`)."""
    if self._watcher is not None:
      return
    self._read_fd, self._write_fd = os.pipe()
    os.set_blocking(self._write_fd, False)   # set_wakeup_fd needs a non-blocking descriptor
    for sig in SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
    self._watcher = threading.Thread(target=self._watch, name='stop-signals', daemon=True)
    self._watcher.start()

  def restore(self) -> None:
    """Puts the previous handlers back and ends the watcher; nothing when not installed."""
    if self._watcher is None:
      return
    signal.set_wakeup_fd(self._previous_wakeup)
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    # After the signals already in the pipe; not the end of the pipe, which a forked child
    # holding a copy of its write end would keep from coming.
    os.write(self._write_fd, bytes([_DONE]))
    self._watcher.join()
    self._watcher = None
    self._previous.clear()
    os.close(self._write_fd)
    os.close(self._read_fd)

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    """Python's handler, run in the main thread at its next bytecode."""
    del frame
    self._handled += 1
    if self.signal is None:
      self.signal = signum
    if signum == signal.SIGINT and not self.can_save and self._handled == 1:
      raise KeyboardInterrupt
    if self._handled > 1 and not self.exit_at_once:
      raise KeyboardInterrupt

  def _watch(self) -> None:
    """The watcher thread: acknowledges each signal the moment it arrives."""
    count = 0
    while True:
      try:
        data = os.read(self._read_fd, 64)
      except OSError:
        return
      if not data:
        return
      for signum in data:
        if signum == _DONE:
          return
        if signum not in SIGNALS:
          continue   # another signal with a Python handler writes its number here too
        count += 1
        name = signal_name(signum)
        if count == 1:
          if self.signal is None:
            self.signal = signum
          if signum == signal.SIGINT and self.finishing:
            _say(f'{name}: interrupting the final evaluation (the final checkpoint is saved; the '
                 'same command evaluates it again)')
          elif signum == signal.SIGINT and not self.can_save:
            _say(f'{name}: stopping before the first training step (nothing to save yet)')
          elif self.finishing:
            _say(f'{name}: finishing the final evaluation and its outputs, then exiting '
                 f'({name} again to exit at once)')
          else:
            _say(f'{name}: stopping after the current call of steps, then saving a checkpoint '
                 f'({name} again to exit at once without saving)')
          self.received.set()
        elif count == 2:
          if self.exit_at_once:
            _say(f'{name} again: exiting now without saving; the checkpoints already written '
                 'are intact (a save still in progress is discarded by the next run)')
            os._exit(exit_status(signum))
          _say(f'{name} again: interrupting (KeyboardInterrupt)')


def _say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)

"""One process at a time in a folder: an advisory lock file naming its holder.

A work directory is written by one run at a time (training; an evaluation that writes its
outputs there), a TFDS data_dir is prepared by one process at a time, and the output folder of
predict, export and ensemble is written by one command at a time (`output_folder`;
docs/workdir.md). The
lock is `fcntl.flock` on a file in the folder (`.lock` in a work directory), which holds one JSON
line naming the holder: {"pid", "host", "since", "activity"}. The kernel releases a flock when
its holder exits, however it exits, so a lock is never stuck; a file still naming a holder when
its lock is free was left by a holder that was killed, and is taken over with a note. A holder
that ends normally removes the file.

flock is advisory: it keeps out processes that take the same lock (this package), not others.
On a file system without flock (some network mounts) the folder is used unlocked, with a note.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from micro_dualnet_jax.errors import DirectoryInUseError, OutputWriteError

LOCK_FILE = '.lock'
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds (or held) a lock, as written in its file."""
  pid: int
  host: str
  since: str
  activity: str

  def describe(self) -> str:
    return f'process {self.pid} on host {self.host} ({self.activity} since {self.since})'

  def running(self) -> bool | None:
    """Whether the process is alive: None when it is on another host (unknown)."""
    if self.host != socket.gethostname():
      return None
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:   # alive, another user's
      return True
    return True


def _read_holder(fd: int) -> Holder | None:
  """The holder named in the open lock file, or None when it is empty or unreadable."""
  try:
    record = json.loads(os.pread(fd, 4096, 0).decode('utf-8'))
    return Holder(int(record['pid']), str(record['host']), str(record['since']),
                  str(record.get('activity', 'using it')))
  except (ValueError, KeyError, TypeError, OSError):
    return None


class DirectoryLock:
  """The lock of `folder` (the file `folder/name`); `what` names the folder in messages.

  Use `acquire()` / `release()`, or `with lock:`. The folder must exist.
  """

  def __init__(self, folder: str | os.PathLike[str], *, name: str = LOCK_FILE,
               what: str = 'work directory', activity: str = 'using it'):
    self.folder = os.fspath(folder)
    self.path = os.path.join(self.folder, name)
    self.what, self.activity = what, activity
    self._fd: int | None = None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def acquire(self, *, wait: bool = False,
              on_wait: Callable[[Holder | None], None] | None = None) -> None:
    """Takes the lock.

    Args:
      wait: wait for a holder to finish instead of raising.
      on_wait: called once with the holder (None: not yet known) before waiting.

    Raises:
      DirectoryInUseError: another process holds it (and not `wait`); the message names it.
      OutputWriteError: the lock file cannot be created (a read-only folder).
    """
    if self._fd is not None:
      raise RuntimeError(f'{self.path} is already held by this object')
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
      except OSError as error:
        raise OutputWriteError(f'cannot create the lock file {self.path} ({error.strerror}): '
                               f'the {self.what} is not writable') from None
      try:
        if not self._lock(fd, wait, on_wait):   # a file system without flock: used unlocked
          os.close(fd)
          with contextlib.suppress(OSError):
            os.remove(self.path)
          return
        # A releasing holder removes the file after we opened it: the lock we got is on a file
        # no one else will open; take the one now at the path instead.
        try:
          same = os.path.samestat(os.stat(self.path), os.fstat(fd))
        except FileNotFoundError:
          same = False
      except BaseException:
        os.close(fd)
        raise
      if same:
        break
      os.close(fd)
    left = _read_holder(fd)
    if left is not None:
      state = {False: 'which is no longer running', None: 'on another host',
               True: 'which is running but no longer holds the lock'}[left.running()]
      print(f'note: taking over the lock of {self.folder} left by {left.describe()}, {state} '
            '(it did not end normally)', flush=True)
    record = {'pid': os.getpid(), 'host': socket.gethostname(),
              'since': time.strftime('%Y-%m-%d %H:%M:%S %z'), 'activity': self.activity}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + '\n').encode('utf-8'), 0)
    self._fd = fd

  def _lock(self, fd: int, wait: bool,
            on_wait: Callable[[Holder | None], None] | None) -> bool:
    """flock(fd); False when the file system does not support it."""
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except BlockingIOError:
      holder = _read_holder(fd)
      if not wait:
        who = holder.describe() if holder is not None else 'another process (starting up)'
        raise DirectoryInUseError(
            f'{self.what} {self.folder} is in use by {who}: wait for it to end, or stop it; two '
            'processes in one folder would overwrite each other\'s files') from None
      if on_wait is not None:
        on_wait(holder)
      fcntl.flock(fd, fcntl.LOCK_EX)
      return True
    except OSError as error:
      if error.errno not in _UNSUPPORTED:
        raise
      print(f'note: the file system of {self.folder} does not support file locks '
            f'({error.strerror}); nothing keeps a second process out of it', flush=True)
      return False

  def release(self) -> None:
    """Removes the lock file and releases the lock (nothing when not held)."""
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      os.remove(self.path)   # while still holding it: see the check in acquire()
    except OSError:
      pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

  def __enter__(self) -> DirectoryLock:
    self.acquire()
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike[str], activity: str, *,
                  acquire: Callable[[DirectoryLock], None] = DirectoryLock.acquire,
                  main: bool = True) -> Iterator[str]:
  """Holds the lock of the output folder `folder` while the block writes into it, so that a
  second command writing the same folder is refused by name (DirectoryInUseError) instead of
  leaving a mix of both commands' files. `folder` (and any missing parent) is created if
  needed, and removed again when the block leaves it empty (a recording refused before its
  files were written). Where several processes run the command, only process 0 (`main`) creates
  and removes folders, and `acquire` is the collective `sharding.acquire_on_process_0`.
  Yields the folder's path.
  """
  folder = os.fspath(folder)
  created = _missing_folders(folder) if main else []
  if main:
    _make_output_folder(folder)
  lock = DirectoryLock(folder, what='output folder', activity=activity)
  try:
    try:
      acquire(lock)
    except OutputWriteError:
      if not main or os.path.isdir(folder):
        raise
      # Another command removed the folder it had created, empty, between our makedirs and
      # our lock: make it again, once.
      _make_output_folder(folder)
      acquire(lock)
    yield folder
  finally:
    lock.release()
    for path in created:   # innermost first; one that is not empty stops it
      try:
        os.rmdir(path)
      except OSError:
        break


def _missing_folders(folder: str) -> list[str]:
  """The folders makedirs(folder) would create, innermost first."""
  missing = []
  while folder and not os.path.isdir(folder):
    missing.append(folder)
    parent = os.path.dirname(folder)
    if parent == folder:
      break
    folder = parent
  return missing


def _make_output_folder(folder: str) -> None:
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as error:
    raise OutputWriteError(f'cannot create the output folder {folder} ({error.strerror})') \
        from None

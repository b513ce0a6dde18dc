"""The errors a user's command can end with; `cli.py` turns each into one line and exit 2."""


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, a checkpoint that cannot be written, ...)."""


class CheckpointReadError(RuntimeError):
  """No checkpoint of a run directory could be restored (every candidate failed).

  failures: (checkpoint folder, why it failed) per candidate, newest first.
  """

  def __init__(self, message: str, failures: list[tuple[str, str]] | None = None):
    super().__init__(message)
    self.failures = list(failures or [])


class OutputWriteError(RuntimeError):
  """A result file could not be written (full disk, read-only mount); the message names it."""


class DirectoryInUseError(RuntimeError):
  """Another process holds the lock of a work directory (or data_dir); the message names it."""

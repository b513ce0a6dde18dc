"""Every error a user's command can end with, in one place (no imports: any module may raise one).

`UserError` means something the user gave (a config value, a data file, a work directory, a
command-line argument) cannot be used; its message says which and what to do. `cli.py` prints it
as one line on stderr with exit status 2. Any other exception is a bug and keeps its traceback
(exit status 1). Each subclass also derives from the built-in error it used to be, so
`except ValueError` around library calls keeps working.
"""


class UserError(Exception):
  """Base of the errors a user can fix; the message is the whole explanation."""


class ConfigError(UserError, ValueError):
  """A config value (or a module argument) out of range, of the wrong type, or unknown."""


class InputError(UserError, ValueError):
  """A command-line argument or input that cannot be used (e.g. --input, ensemble members)."""


class DataFormatError(UserError, ValueError):
  """Malformed input data. The message names the file (and row, sample or clip) and the problem."""


class DatasetNotFoundError(UserError, FileNotFoundError):
  """The released files of a dataset are not where prepare looked; the message says what to do."""


class LayoutError(ConfigError):
  """A layout table entry is inconsistent (raised at registration, naming the layout)."""


class RunDirError(UserError, ValueError):
  """A work directory that cannot be used as asked (missing, another model, older format)."""


class TrainingError(UserError, RuntimeError):
  """A run that cannot go on (non-finite loss, a checkpoint that cannot be written, ...)."""


class CheckpointReadError(UserError, RuntimeError):
  """No checkpoint of a run directory could be restored (every candidate failed).

  failures: (checkpoint folder, why it failed) per candidate, newest first.
  """

  def __init__(self, message: str, failures: list[tuple[str, str]] | None = None):
    super().__init__(message)
    self.failures = list(failures or [])


class CheckpointWriteError(UserError, RuntimeError):
  """A checkpoint could not be written (full disk, unwritable directory, ...)."""


class OutputWriteError(UserError, RuntimeError):
  """A result file could not be written (full disk, read-only mount); the message names it."""


class DirectoryInUseError(UserError, RuntimeError):
  """Another process holds the lock of a work directory (or data_dir); the message names it."""

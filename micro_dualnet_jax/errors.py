"""The errors a user's command can end with; `cli.py` turns each into one line and exit 2."""


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, a checkpoint that cannot be written, ...)."""


class CheckpointReadError(RuntimeError):
  """No checkpoint of a run directory could be restored (every candidate failed)."""

"""Output files written whole or not at all.

Every result file (summary.json, eval_outputs.npz, predictions.csv, the submission and its zip,
the figures, the prediction outputs, the export) is written to a temporary name beside it and
renamed over it when complete: a full disk, a read-only mount or a kill in the middle of a write
leaves the previous file (or none), never a truncated or 0-byte one. A failed write raises
`OutputWriteError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from micro_dualnet_jax.errors import OutputWriteError


def temporary_name(path: str | os.PathLike[str]) -> str:
  """`.<stem>.<pid>.tmp<suffix>` beside `path`: hidden, one per process, and with the suffix of
  `path` (numpy, matplotlib and Pillow choose the format by it)."""
  folder, name = os.path.split(os.fspath(path))
  stem, suffix = os.path.splitext(name)
  return os.path.join(folder, f'.{stem}.{os.getpid()}.tmp{suffix}')


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
  """Yields a temporary path to write `path`'s content to; renames it to `path` when the block
  ends without an error, removes it otherwise.

  Raises OutputWriteError naming `path` when the writing or the rename fails with an OSError
  (full disk, no permission); `path` is then as it was before.
  """
  path = os.fspath(path)
  temporary = temporary_name(path)
  try:
    yield temporary
    os.replace(temporary, path)
  except BaseException as error:
    with contextlib.suppress(OSError):
      os.remove(temporary)
    if isinstance(error, OSError):
      raise OutputWriteError(f'writing {path} failed ({error.strerror or error}); the file is '
                             'as it was before') from error
    raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
  """Writes `text` to `path` atomically (`atomic_path`)."""
  with atomic_path(path) as temporary, open(temporary, 'w', encoding='utf-8') as f:
    f.write(text)


def write_json(path: str | os.PathLike[str], value: Any) -> None:
  """Writes `value` as indented JSON to `path` atomically (`atomic_path`)."""
  write_text(path, json.dumps(value, indent=2))

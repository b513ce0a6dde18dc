"""Test setup: 8 host CPU devices, so sharded code runs on one machine, and a compilation cache.

XLA reads XLA_FLAGS when jax first initialises its backends, so this runs before any test imports
jax. The persistent compilation cache lets the many small training runs of the suite, and the
subprocesses they start, compile each distinct program once, and it outlives the session: a
program unchanged since an earlier run of the tests (on this machine, same jax) is loaded, not
compiled. Compiling is most of the suite's time; see tests/README.md for the measured effect. It
lives in ~/.cache/micro_dualnet_jax/xla_tests (JAX_COMPILATION_CACHE_DIR chooses another folder;
an entry is keyed by the program, the compiler options and the jax version, so a stale one is
never used), and is cut back to its newer half when it passes CACHE_LIMIT_BYTES.
"""

import os
import pathlib

_flag = '--xla_force_host_platform_device_count=8'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
CACHE_LIMIT_BYTES = 2 << 30


def trim_cache(folder: pathlib.Path, limit: int = CACHE_LIMIT_BYTES) -> None:
  """Past `limit` bytes in all, deletes the oldest files (by modification time) down to half."""
  entries = []
  for path in folder.iterdir():
    try:
      entries.append((path.stat().st_mtime, path.stat().st_size, path))
    except FileNotFoundError:   # removed meanwhile by another test session
      continue
  total = sum(size for _, size, _ in entries)
  if total <= limit:
    return
  for _, size, path in sorted(entries):
    if total <= limit // 2:
      break
    path.unlink(missing_ok=True)
    total -= size


if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = pathlib.Path(os.environ.get('XDG_CACHE_HOME', pathlib.Path.home() / '.cache'),
                        'micro_dualnet_jax', 'xla_tests')
  _cache.mkdir(parents=True, exist_ok=True)
  trim_cache(_cache)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = str(_cache)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(autouse=True)
def _layouts_registered_by_a_test_are_removed_after_it():
  from micro_dualnet_jax.skeleton import layout_names, unregister_layout
  before = set(layout_names())
  yield
  for name in set(layout_names()) - before:
    unregister_layout(name)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A TFDS data directory per test module: its smoke dataset is prepared once per module."""
  return str(tmp_path_factory.mktemp('tfds'))

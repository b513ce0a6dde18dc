"""Process-level settings that must be in place before the process starts (no jax import here).

XLA:CPU allocates a step's temporary buffers (GBs for the default model) afresh on every call.
glibc serves allocations that large with mmap and returns them with munmap, so every step
first-touches its whole working set again: ~0.93 M minor page faults and 1.4 s of kernel time
per default-model training step (batch 32) on the 2-core benchmark machine. With the glibc
tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc advises transparent huge pages on those
mappings: 2 MB pages, ~2,400 faults per step, and the step is 1.3x faster
(benchmarks/README.md, "Page faults").

A tunable is read once, when the process starts, so `reexec_with_tuned_malloc` restarts the
interpreter with it (os.execve: same PID, so signals and launchers see one process). Set
MICRO_DUALNET_TUNED_MALLOC=0 to keep the process as started.
"""

from __future__ import annotations

import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
OPT_OUT_ENV = 'MICRO_DUALNET_TUNED_MALLOC'


def tuned_malloc_env(environ: dict[str, str]) -> dict[str, str] | None:
  """The environment to restart with, or None where nothing should change.

  Nothing changes off Linux, when the user opted out, or when GLIBC_TUNABLES already sets
  glibc.malloc.hugetlb (the user's value wins). Other tunables are kept.
  """
  if not sys.platform.startswith('linux') or environ.get(OPT_OUT_ENV, '1') == '0':
    return None
  tunables = environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' in tunables:
    return None
  return {**environ, 'GLIBC_TUNABLES': ':'.join(filter(None, (tunables, TUNABLE))),
          OPT_OUT_ENV: environ.get(OPT_OUT_ENV, '1')}


def reexec_with_tuned_malloc() -> None:
  """Restarts this Python process with the huge-page malloc tunable (see the module doc).

  Call first thing in an entry point, before jax is imported: nothing done before the call
  survives it. A no-op where `tuned_malloc_env` returns None, or when the interpreter's path is
  unknown.
  """
  env = tuned_malloc_env(dict(os.environ))
  if env is None or not sys.executable or 'jax' in sys.modules:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)

"""Test setup: 8 host CPU devices, so sharded code runs on one machine, and a compilation cache.

XLA reads XLA_FLAGS when jax first initialises its backends, so this runs before any test imports
jax. The persistent compilation cache (one per test session) lets the many small training runs
of the suite, and the subprocesses they start, compile each distinct program once.
"""

import os
import tempfile

_flag = '--xla_force_host_platform_device_count=8'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='mdn_jax_cache_'))
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

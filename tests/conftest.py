"""Test setup: 8 host CPU devices, so sharded code runs on one machine.

XLA reads XLA_FLAGS when jax first initialises its backends, so this runs before any test imports
jax.
"""

import os

_flag = '--xla_force_host_platform_device_count=8'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

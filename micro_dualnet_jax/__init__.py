"""Micro-DualNet in JAX/Flax: dual-path spatio-temporal skeleton micro-action recognition.

    from micro_dualnet_jax import MicroDualNet, ModelConfig, get_layout

The names below load on first use, so `import micro_dualnet_jax.hostenv` (or the data readers)
does not pull in jax.
"""

import importlib

__version__ = '0.1.0'

_EXPORTS = {
    'LossConfig': 'losses', 'cross_entropy': 'losses', 'mac_infonce': 'losses',
    'total_loss': 'losses',
    'MicroDualNet': 'models', 'ModelConfig': 'models', 'apply': 'models', 'init': 'models',
    'Layout': 'skeleton', 'get_layout': 'skeleton', 'layout_names': 'skeleton',
    'register_layout': 'skeleton',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted([*globals(), *__all__])

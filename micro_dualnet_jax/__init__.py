"""Micro-DualNet in JAX/Flax: dual-path spatio-temporal skeleton micro-action recognition.

    from micro_dualnet_jax import MicroDualNet, ModelConfig, get_layout
"""

from micro_dualnet_jax.losses import LossConfig, cross_entropy, mac_infonce, total_loss
from micro_dualnet_jax.models import MicroDualNet, ModelConfig, apply, init
from micro_dualnet_jax.skeleton import Layout, get_layout, layout_names, register_layout

__version__ = '0.1.0'

__all__ = [
    'Layout', 'LossConfig', 'MicroDualNet', 'ModelConfig', 'apply', 'cross_entropy',
    'get_layout', 'init', 'layout_names', 'mac_infonce', 'register_layout', 'total_loss',
]

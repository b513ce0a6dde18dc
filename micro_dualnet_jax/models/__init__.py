"""Micro-DualNet model modules (Flax NNX)."""

from micro_dualnet_jax.models.config import ModelConfig
from micro_dualnet_jax.models.functional import apply, init
from micro_dualnet_jax.models.micro_dualnet import MicroDualNet

__all__ = ['MicroDualNet', 'ModelConfig', 'apply', 'init']

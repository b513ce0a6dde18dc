"""Data: readers for each released format, TFDS builders, loader, on-device augmentation."""

from micro_dualnet_jax.data.clip import Clip, DataFormatError

__all__ = ['Clip', 'DataFormatError']

"""Skeleton joint layouts, bones, flip pairs and entity partitions."""

from micro_dualnet_jax.skeleton.layouts import (
    ENTITY_ORDER, LAYOUTS, Layout, LayoutError, get_layout, layout_names, register_layout,
    unregister_layout)

__all__ = ['ENTITY_ORDER', 'LAYOUTS', 'Layout', 'LayoutError', 'get_layout', 'layout_names',
           'register_layout', 'unregister_layout']

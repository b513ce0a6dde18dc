"""The model's hyper-parameters as one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from micro_dualnet_jax.skeleton import get_layout
from micro_dualnet_jax.config_utils import dataclass_kwargs

PATHS = ('dual', 'st', 'ts')
FUSIONS = ('routing', 'static', 'mean')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Micro-DualNet hyper-parameters (DESIGN.md Section 1; defaults are the paper's).

  Attributes:
    layout: joint layout name (`micro_dualnet_jax.skeleton`), fixes V, the entities and C.
    num_classes: number of output classes.
    num_frames: the largest T the model accepts (length of the temporal position embedding).
    entities: subset of the layout's entities to use (None: all of them, K = 5 or 6).
    width: token width D.
    num_heads: attention heads in every transformer.
    spatial_layers: layers of each Spatial-T stack (ST and TS paths).
    temporal_layers: layers of each Temporal-T stack.
    mlp_ratio: transformer MLP hidden width / D.
    dropout: dropout rate in transformers and the head.
    paths: 'dual' | 'st' | 'ts' (single-path models hold only their own path).
    fusion: 'routing' (input-dependent per-entity router) | 'static' (learned per-entity
      logits) | 'mean' (0.5 / 0.5).
    router_temperature: tau in softmax(R_k(.) / tau).
    global_token: whether the global token feeds the head.
    mac_projection: whether the model holds the MAC projection (needed by the MAC loss).
    velocity_scale: factor on the frame-difference input features (EntityEmbedding), so that
      motion reaches the first layer at the scale of position.
    dtype: compute dtype, 'float32' or 'bfloat16' (parameters stay float32).
  """
  layout: str = 'openpose22'
  num_classes: int = 32
  num_frames: int = 64
  entities: tuple[str, ...] | None = None
  width: int = 256
  num_heads: int = 8
  spatial_layers: int = 3
  temporal_layers: int = 3
  mlp_ratio: int = 4
  dropout: float = 0.1
  paths: str = 'dual'
  fusion: str = 'routing'
  router_temperature: float = 1.0
  global_token: bool = True
  mac_projection: bool = True
  velocity_scale: float = 10.0
  dtype: str = 'float32'

  def __post_init__(self):
    layout = get_layout(self.layout)  # raises on an unknown layout
    if self.entities is not None:
      object.__setattr__(self, 'entities', tuple(self.entities))
      layout.entity_index_table(self.entities)  # raises on unknown entities
    checks = [
        (self.num_classes >= 2, f'num_classes must be >= 2, got {self.num_classes}'),
        (self.num_frames >= 1, f'num_frames must be >= 1, got {self.num_frames}'),
        (self.width % self.num_heads == 0,
         f'width {self.width} is not divisible by num_heads {self.num_heads}'),
        (self.width % 2 == 0, f'width must be even, got {self.width}'),
        (self.paths in PATHS, f'paths must be one of {PATHS}, got {self.paths!r}'),
        (self.fusion in FUSIONS, f'fusion must be one of {FUSIONS}, got {self.fusion!r}'),
        (0.0 <= self.dropout < 1.0, f'dropout must be in [0, 1), got {self.dropout}'),
        (self.router_temperature > 0,
         f'router_temperature must be > 0, got {self.router_temperature}'),
        (self.spatial_layers >= 1 and self.temporal_layers >= 1,
         'spatial_layers and temporal_layers must be >= 1'),
        (self.velocity_scale > 0, f'velocity_scale must be > 0, got {self.velocity_scale}'),
        (self.dtype in DTYPES, f'dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}'),
        (not (self.mac_projection and self.paths != 'dual'),
         f'the MAC projection needs both paths (paths={self.paths!r}); set mac to none'),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f'invalid model config: {message}')

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'ModelConfig':
    """Builds from a dict or `ml_collections.ConfigDict`; unknown keys are refused by name."""
    values = dataclass_kwargs(cls, values, 'model config keys')
    if values.get('entities') is not None:
      values['entities'] = tuple(values['entities'])
    return cls(**values)

  @property
  def coord_dims(self) -> int:
    return get_layout(self.layout).coord_dims

  @property
  def num_joints(self) -> int:
    return get_layout(self.layout).num_joints

  @property
  def entity_names(self) -> tuple[str, ...]:
    return self.entities or get_layout(self.layout).entity_names

  @property
  def num_entities(self) -> int:
    return len(self.entity_names)

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

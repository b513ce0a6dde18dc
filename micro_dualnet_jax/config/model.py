"""The model's hyper-parameters as one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.dicts import dataclass_kwargs
from micro_dualnet_jax.errors import ConfigError
from micro_dualnet_jax.skeleton import get_layout

JOINT_FEATURES = ('center', 'root', 'position', 'velocity', 'confidence')
TIME_EMBEDDINGS = ('slot', 'position')


def check_joint_features(features: Any) -> tuple[str, ...]:
  """A non-empty tuple of distinct names from JOINT_FEATURES, in the given order."""
  if isinstance(features, str) or not features:
    raise ConfigError(f'joint_features must be a non-empty sequence of {JOINT_FEATURES}, got '
                     f'{features!r}')
  features = tuple(features)
  if any(f not in JOINT_FEATURES for f in features) or len(set(features)) != len(features):
    raise ConfigError(f'joint_features must be distinct names from {JOINT_FEATURES}, got '
                     f'{features!r}')
  return features

PATHS = ('dual', 'st', 'ts')
FUSIONS = ('routing', 'static', 'mean')
DTYPES = ('float32', 'bfloat16')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Micro-DualNet hyper-parameters; the defaults are the paper's (docs/method.md).

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
    mac_projection: whether the model holds the MAC projection (needed by the InfoNCE MAC loss;
      a run config sets it from `loss.mac`).
    path_heads: whether each path has its own classifier head (needed by the 'kl' MAC loss; a
      run config sets it from `loss.mac`).
    velocity_scale: factor on the frame-difference input features (EntityEmbedding), so that
      motion reaches the first layer at the scale of position.
    joint_features: the per-joint input features of the entity embedding, from 'center',
      'root', 'position', 'velocity', 'confidence' (`EntityEmbedding`).
    time_embedding: what the temporal embedding encodes: 'slot', the index t of the sampled
      frame (a learned row per slot); 'position', the frame's real place in its clip, a
      fraction in [0, 1], read from the same learned rows by linear interpolation
      (`EntityEmbedding`; SkateFormer's temporal embedding of sampled frames).
    dtype: compute dtype, 'float32' or 'bfloat16' (parameters, the loss and the optimizer stay
      float32).
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
  path_heads: bool = False
  velocity_scale: float = 10.0
  joint_features: tuple[str, ...] = ('center', 'root', 'velocity', 'confidence')
  time_embedding: str = 'slot'
  dtype: str = 'float32'

  def __post_init__(self):
    with check.section('model config'):
      if not isinstance(self.layout, str):
        raise ConfigError(f'layout must be a layout name, got {self.layout!r}')
      layout = get_layout(self.layout)  # raises on an unknown layout, naming the known ones
      if self.entities is not None:
        if isinstance(self.entities, str):
          raise ConfigError(f'entities must be a sequence of entity names, got {self.entities!r}')
        object.__setattr__(self, 'entities', tuple(self.entities))
        if not self.entities:
          raise ConfigError('entities must name at least one entity (None: all of them)')
        layout.entity_index_table(self.entities)  # raises on unknown entities
      check.integer('num_classes', self.num_classes, minimum=2)
      check.positive_int('num_frames', self.num_frames)
      check.positive_int('width', self.width)
      check.positive_int('num_heads', self.num_heads)
      if self.width % 2:
        raise ConfigError(f'width must be even, got {self.width}')
      check.divisible('width', self.width, 'num_heads', self.num_heads)
      check.positive_int('spatial_layers', self.spatial_layers)
      check.positive_int('temporal_layers', self.temporal_layers)
      check.positive_int('mlp_ratio', self.mlp_ratio)
      check.number_in('dropout', self.dropout, 0.0, 1.0, high_open=True)
      check.one_of('paths', self.paths, PATHS)
      check.one_of('fusion', self.fusion, FUSIONS)
      check.positive('router_temperature', self.router_temperature)
      check.boolean('global_token', self.global_token)
      check.boolean('mac_projection', self.mac_projection)
      check.boolean('path_heads', self.path_heads)
      check.positive('velocity_scale', self.velocity_scale)
      object.__setattr__(self, 'joint_features', check_joint_features(self.joint_features))
      check.one_of('time_embedding', self.time_embedding, TIME_EMBEDDINGS)
      check.one_of('dtype', self.dtype, DTYPES)
      for name in ('mac_projection', 'path_heads'):
        if getattr(self, name) and self.paths != 'dual':
          raise ConfigError(
              f'{name}=True needs both paths, got paths={self.paths!r}: set {name}=False (in a '
              "run config, loss.mac='none')")

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'ModelConfig':
    """Builds from a mapping; unknown keys are refused by name."""
    values = dataclass_kwargs(cls, values, 'model config keys')
    for key in ('entities', 'joint_features'):
      if isinstance(values.get(key), list):
        values[key] = tuple(values[key])
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
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    return {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[self.dtype]

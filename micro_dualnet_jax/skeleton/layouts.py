"""Joint layouts and entity partitions (docs/data_formats.md, "Joint layouts" and "Entities").

A layout is one `Layout` entry in `LAYOUTS`. Nothing else in the package names joints: the model,
the readers and the augmentation read joint counts, bones, flip pairs and entity index lists from
here. To add a layout, append one `Layout(...)` to `LAYOUTS` (or call `register_layout`); it is
validated when registered.

"Left" and "right" are always the person's own side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from micro_dualnet_jax.errors import LayoutError

# Canonical entity order. Entity index k in the model follows this order, restricted to the
# entities a layout defines (upper-body layouts have no "lower_body", so K = 5).
ENTITY_ORDER: tuple[str, ...] = (
    'face', 'head', 'torso', 'left_hand', 'right_hand', 'lower_body')
# Entities that horizontal flip swaps.
ENTITY_FLIP_PAIRS: tuple[tuple[str, str], ...] = (('left_hand', 'right_hand'),)




@dataclasses.dataclass(frozen=True)
class Layout:
  """One skeleton joint layout.

  Attributes:
    name: registry key, e.g. 'openpose22'.
    joint_names: V canonical joint names (unique); readers convert between layouts by name.
    parents: V parent indices (-1 for the tree root); bone j = joint j - joint parents[j].
    flip_pairs: (left, right) joint index pairs swapped by a horizontal flip.
    center_joints: joints whose mean (over the visible ones) is the body root used for
      root-centred coordinates.
    scale_pair: two joints whose distance is the body scale reference.
    entities: entity name -> joint indices (sets may overlap), names from ENTITY_ORDER.
    coord_dims: 2 (image coordinates, with a confidence channel) or 3 (camera space).
    description: where the layout comes from.
  """
  name: str
  joint_names: tuple[str, ...]
  parents: tuple[int, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  center_joints: tuple[int, ...]
  scale_pair: tuple[int, int]
  entities: Mapping[str, tuple[int, ...]]
  coord_dims: int
  description: str = ''

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def entity_names(self) -> tuple[str, ...]:
    """Entity names in canonical order (K of them)."""
    return tuple(e for e in ENTITY_ORDER if e in self.entities)

  @property
  def num_entities(self) -> int:
    return len(self.entity_names)

  @property
  def bones(self) -> tuple[tuple[int, int], ...]:
    """(child, parent) pairs of the kinematic tree."""
    return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

  @property
  def root(self) -> int:
    """The root of the kinematic tree (the joint with parent -1)."""
    return self.parents.index(-1)

  @property
  def torso_pairs(self) -> tuple[tuple[int, int], ...]:
    """(left, right) shoulder and hip pairs: their differences give the body's left-right axis."""
    names = self.joint_names
    return tuple((left, right) for left, right in self.flip_pairs
                 if any(part in names[left] for part in ('shoulder', 'hip')))

  def flip_permutation(self) -> np.ndarray:
    """(V,) int array: joint j of the flipped skeleton is joint perm[j] of the original."""
    perm = np.arange(self.num_joints)
    for left, right in self.flip_pairs:
      perm[left], perm[right] = right, left
    return perm

  def entity_flip_permutation(self, entity_names: Sequence[str] | None = None) -> np.ndarray:
    """(K,) int array: entity k after a flip is entity perm[k] before it."""
    names = tuple(entity_names or self.entity_names)
    perm = np.arange(len(names))
    for a, b in ENTITY_FLIP_PAIRS:
      if a in names and b in names:
        ia, ib = names.index(a), names.index(b)
        perm[ia], perm[ib] = ib, ia
    return perm

  def entity_index_table(
      self, entity_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Padded gather table for the batched entity embedding.

    Args:
      entity_names: subset of entities to use (default: all of the layout's, canonical order).

    Returns:
      index: (K, J) int32 joint indices, J = size of the largest entity; padding slots hold 0.
      mask: (K, J) float32, 1 for real joints, 0 for padding.
    """
    names = tuple(entity_names or self.entity_names)
    unknown = [n for n in names if n not in self.entities]
    if unknown:
      raise LayoutError(
          f'layout {self.name!r} has no entities {unknown}; it has {list(self.entity_names)}')
    width = max(len(self.entities[n]) for n in names)
    index = np.zeros((len(names), width), np.int32)
    mask = np.zeros((len(names), width), np.float32)
    for k, n in enumerate(names):
      joints = self.entities[n]
      index[k, :len(joints)] = joints
      mask[k, :len(joints)] = 1.0
    return index, mask

  def map_from(self, source: 'Layout') -> np.ndarray:
    """(V,) indices into `source` giving this layout's joints (by joint name).

    Raises LayoutError naming the joints `source` lacks.
    """
    missing = [n for n in self.joint_names if n not in source.joint_names]
    if missing:
      raise LayoutError(
          f'cannot convert {source.name!r} to {self.name!r}: {source.name!r} lacks {missing}')
    return np.array([source.joint_names.index(n) for n in self.joint_names], np.int32)

  def validate(self) -> None:
    """Checks indices are in range, flips are an involution, entities are non-empty."""
    v = self.num_joints
    where = f'layout {self.name!r}'
    if len(set(self.joint_names)) != v:
      raise LayoutError(f'{where}: joint names are not unique')
    if len(self.parents) != v:
      raise LayoutError(f'{where}: {len(self.parents)} parents for {v} joints')
    if self.parents.count(-1) != 1:
      raise LayoutError(f'{where}: the kinematic tree needs exactly one root (parent -1)')
    for j, p in enumerate(self.parents):
      if not -1 <= p < v or p == j:
        raise LayoutError(f'{where}: joint {j} has invalid parent {p}')
    for j in range(v):  # every joint reaches the root: no cycles
      seen, k = set(), j
      while k != -1:
        if k in seen:
          raise LayoutError(f'{where}: the parents of joint {j} form a cycle')
        seen.add(k)
        k = self.parents[k]
    flipped = [j for pair in self.flip_pairs for j in pair]
    if len(set(flipped)) != len(flipped):
      raise LayoutError(f'{where}: a joint appears in two flip pairs')
    for a, b in self.flip_pairs:
      if not (0 <= a < v and 0 <= b < v) or a == b:
        raise LayoutError(f'{where}: invalid flip pair ({a}, {b})')
    perm = self.flip_permutation()
    if not np.array_equal(perm[perm], np.arange(v)):
      raise LayoutError(f'{where}: the flip is not an involution')
    for name in (*self.center_joints, *self.scale_pair):
      if not 0 <= name < v:
        raise LayoutError(f'{where}: root/scale joint {name} out of range')
    if self.scale_pair[0] == self.scale_pair[1]:
      raise LayoutError(f'{where}: scale_pair needs two different joints')
    if not self.entities:
      raise LayoutError(f'{where}: no entities')
    for ent, joints in self.entities.items():
      if ent not in ENTITY_ORDER:
        raise LayoutError(f'{where}: unknown entity {ent!r}; known: {ENTITY_ORDER}')
      if not joints:
        raise LayoutError(f'{where}: entity {ent!r} is empty')
      if len(set(joints)) != len(joints) or not all(0 <= j < v for j in joints):
        raise LayoutError(f'{where}: entity {ent!r} has repeated or out-of-range joints {joints}')
    # A flip must map each flipped entity onto its partner.
    for a, b in ENTITY_FLIP_PAIRS:
      if a in self.entities and b in self.entities:
        if sorted(perm[list(self.entities[a])]) != sorted(self.entities[b]):
          raise LayoutError(f'{where}: flipping entity {a!r} does not give entity {b!r}')
    if self.coord_dims not in (2, 3):
      raise LayoutError(f'{where}: coord_dims must be 2 or 3, got {self.coord_dims}')


def _span(start: int, stop: int) -> tuple[int, ...]:
  """Inclusive index range."""
  return tuple(range(start, stop + 1))


def _fingers(side: str) -> tuple[str, ...]:
  return tuple(f'{side}_finger_{i}' for i in range(1, 6))


_OPENPOSE_HEAD = ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
                  'left_shoulder', 'left_elbow', 'left_wrist')
_BODY25_NAMES = _OPENPOSE_HEAD + (
    'mid_hip', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle',
    'right_eye', 'left_eye', 'right_ear', 'left_ear', 'left_big_toe', 'left_small_toe',
    'left_heel', 'right_big_toe', 'right_small_toe', 'right_heel')
_BODY25_PARENTS = (1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 10, 8, 12, 13, 0, 0, 15, 16,
                   14, 14, 14, 11, 11, 11)
_BODY25_FLIPS = ((5, 2), (6, 3), (7, 4), (12, 9), (13, 10), (14, 11), (16, 15), (18, 17),
                 (19, 22), (20, 23), (21, 24))
_BODY25_ENTITIES = {
    'face': (0, 15, 16), 'head': (0, 1, 15, 16, 17, 18), 'torso': (1, 2, 5, 8, 9, 12),
    'left_hand': (6, 7), 'right_hand': (3, 4),
    'lower_body': _span(9, 14) + _span(19, 24)}

_KINECT_BODY = (
    'left_shoulder', 'left_elbow', 'left_wrist', 'left_hand', 'right_shoulder', 'right_elbow',
    'right_wrist', 'right_hand', 'left_hip', 'left_knee', 'left_ankle', 'left_foot', 'right_hip',
    'right_knee', 'right_ankle', 'right_foot')
_KINECT_LIMB_FLIPS = tuple((4 + i, 8 + i) for i in range(4)) + tuple(
    (12 + i, 16 + i) for i in range(4))

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name='openpose22',
        description='iMiGUE processed arrays (challenge release): 2D + confidence, upper body.',
        joint_names=_OPENPOSE_HEAD + ('right_eye', 'left_eye', 'right_ear', 'left_ear')
        + _fingers('right') + _fingers('left'),
        parents=(1, -1, 1, 2, 3, 1, 5, 6, 0, 0, 8, 9) + (4,) * 5 + (7,) * 5,
        flip_pairs=((5, 2), (6, 3), (7, 4), (9, 8), (11, 10)) + tuple(
            (17 + i, 12 + i) for i in range(5)),
        center_joints=(1,), scale_pair=(2, 5), coord_dims=2,
        entities={'face': (0, 8, 9), 'head': (0, 1, 8, 9, 10, 11), 'torso': (1, 2, 5),
                  'left_hand': (6, 7) + _span(17, 21), 'right_hand': (3, 4) + _span(12, 16)}),
    Layout(
        name='openpose35',
        description='iMiGUE raw CSV: OpenPose BODY_25 + 5 finger points per hand, 2D + confidence.',
        joint_names=_BODY25_NAMES + _fingers('right') + _fingers('left'),
        parents=_BODY25_PARENTS + (4,) * 5 + (7,) * 5,
        flip_pairs=_BODY25_FLIPS + tuple((30 + i, 25 + i) for i in range(5)),
        center_joints=(1,), scale_pair=(2, 5), coord_dims=2,
        entities={**_BODY25_ENTITIES, 'left_hand': (6, 7) + _span(30, 34),
                  'right_hand': (3, 4) + _span(25, 29)}),
    Layout(
        name='openpose28',
        description='MA-52 official OpenPose skeletons: OpenPose-18 + 5 finger points per hand.',
        joint_names=_OPENPOSE_HEAD + (
            'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle',
            'right_eye', 'left_eye', 'right_ear', 'left_ear') + _fingers('left')
        + _fingers('right'),
        parents=(1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 14, 15) + (7,) * 5
        + (4,) * 5,
        flip_pairs=((5, 2), (6, 3), (7, 4), (11, 8), (12, 9), (13, 10), (15, 14), (17, 16))
        + tuple((18 + i, 23 + i) for i in range(5)),
        center_joints=(1,), scale_pair=(2, 5), coord_dims=2,
        entities={'face': (0, 14, 15), 'head': (0, 1, 14, 15, 16, 17),
                  'torso': (1, 2, 5, 8, 11), 'left_hand': (6, 7) + _span(18, 22),
                  'right_hand': (3, 4) + _span(23, 27), 'lower_body': _span(8, 13)}),
    Layout(
        name='body25',
        description='OpenPose BODY_25 (per-frame JSON from OpenPose), 2D + confidence.',
        joint_names=_BODY25_NAMES, parents=_BODY25_PARENTS, flip_pairs=_BODY25_FLIPS,
        center_joints=(1,), scale_pair=(2, 5), coord_dims=2, entities=_BODY25_ENTITIES),
    Layout(
        name='coco17',
        description='COCO keypoints (most 2D pose estimators), 2D + confidence.',
        joint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                     'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                     'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                     'right_ankle'),
        parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
        flip_pairs=tuple((i, i + 1) for i in range(1, 17, 2)),
        center_joints=(5, 6), scale_pair=(5, 6), coord_dims=2,
        entities={'face': (0, 1, 2), 'head': _span(0, 4), 'torso': (5, 6, 11, 12),
                  'left_hand': (7, 9), 'right_hand': (8, 10), 'lower_body': _span(11, 16)}),
    Layout(
        name='kinect20',
        description='Kinect v1, 20 joints, 3D camera space in metres (NW-UCLA).',
        joint_names=('hip_center', 'spine', 'shoulder_center', 'head') + _KINECT_BODY,
        parents=(1, 2, -1, 2, 2, 4, 5, 6, 2, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18),
        flip_pairs=_KINECT_LIMB_FLIPS,
        center_joints=(1,), scale_pair=(0, 2), coord_dims=3,
        entities={'face': (3,), 'head': (2, 3), 'torso': (0, 1, 2, 4, 8, 12, 16),
                  'left_hand': (5, 6, 7), 'right_hand': (9, 10, 11),
                  'lower_body': _span(12, 19)}),
    Layout(
        name='kinect25',
        description='Kinect v2, 25 joints, 3D camera space in metres (NTU RGB+D).',
        joint_names=('spine_base', 'spine_mid', 'neck', 'head') + _KINECT_BODY + (
            'spine_shoulder', 'left_hand_tip', 'left_thumb', 'right_hand_tip', 'right_thumb'),
        parents=(1, 20, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, -1,
                 22, 7, 24, 11),
        flip_pairs=_KINECT_LIMB_FLIPS + ((21, 23), (22, 24)),
        center_joints=(1,), scale_pair=(0, 20), coord_dims=3,
        entities={'face': (3,), 'head': (2, 3), 'torso': (0, 1, 20, 4, 8, 12, 16),
                  'left_hand': (5, 6, 7, 21, 22), 'right_hand': (9, 10, 11, 23, 24),
                  'lower_body': _span(12, 19)}),
)

_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout, *, overwrite: bool = False) -> Layout:
  """Validates `layout` and adds it to the registry under `layout.name`."""
  layout.validate()
  if layout.name in _REGISTRY and not overwrite:
    raise LayoutError(f'layout {layout.name!r} is already registered')
  _REGISTRY[layout.name] = layout
  return layout


def unregister_layout(name: str) -> None:
  """Removes a layout added with `register_layout`; the built-in `LAYOUTS` stay."""
  if any(layout.name == name for layout in LAYOUTS):
    raise LayoutError(f'layout {name!r} is built in and cannot be removed')
  if name not in _REGISTRY:
    raise LayoutError(f'layout {name!r} is not registered; registered layouts: '
                      f'{sorted(_REGISTRY)}')
  del _REGISTRY[name]


def get_layout(name: str) -> Layout:
  """Returns the registered layout `name`; unknown names list the known ones."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise LayoutError(
        f'unknown joint layout {name!r}; registered layouts: {sorted(_REGISTRY)}') from None


def layout_names() -> tuple[str, ...]:
  return tuple(_REGISTRY)


for _layout in LAYOUTS:
  register_layout(_layout)

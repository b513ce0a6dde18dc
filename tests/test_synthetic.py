"""Tests of the procedural synthetic micro-action benchmark."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.data.synthetic import CLASSES, class_names, generate_split
from micro_dualnet_jax.skeleton import LayoutError, get_layout

NUM_CLASSES = len(CLASSES)
POSITION = [k for k, c in enumerate(CLASSES) if c.type == 'position']
MOTION = [k for k, c in enumerate(CLASSES) if c.type == 'motion']
# Same place, different motion: position features cannot tell these apart, motion energy can.
SAME_PLACE_PAIRS = [('hand_at_eye', 'rub_eyes'), ('clasp_hands', 'rub_hands'),
                    ('hold_arm', 'scratch_arm')]


@pytest.fixture(scope='module')
def train_clips():
  return generate_split('train', num_clips=2 * NUM_CLASSES + 3, seed=7)


def test_class_table():
  assert len(CLASSES) >= 12
  assert class_names() == [c.name for c in CLASSES]
  assert len(set(class_names())) == NUM_CLASSES
  entities = set(get_layout('openpose22').entity_names)
  assert all(c.entity in entities for c in CLASSES)
  assert {c.type for c in CLASSES} == {'position', 'motion'}
  assert len(POSITION) >= 5 and len(MOTION) >= 5
  for still, moving in SAME_PLACE_PAIRS:
    assert CLASSES[class_names().index(still)].type == 'position'
    assert CLASSES[class_names().index(moving)].type == 'motion'


def test_deterministic_and_seed_dependent():
  a = generate_split('train', num_clips=20, seed=3)
  b = generate_split('train', num_clips=20, seed=3)
  c = generate_split('train', num_clips=20, seed=4)
  for x, y in zip(a, b):
    assert x.clip_id == y.clip_id and x.label == y.label and x.meta == y.meta
    np.testing.assert_array_equal(x.keypoints, y.keypoints)
    np.testing.assert_array_equal(x.confidence, y.confidence)
  assert not any(x.keypoints.shape == z.keypoints.shape
                 and np.array_equal(x.keypoints, z.keypoints) for x, z in zip(a, c))


def test_clip_does_not_depend_on_num_clips():
  short = generate_split('test', num_clips=5, seed=1)
  long = generate_split('test', num_clips=12, seed=1)
  for x, y in zip(short, long):
    np.testing.assert_array_equal(x.keypoints, y.keypoints)


def test_splits_never_share_subjects():
  train = generate_split('train', num_clips=60, seed=0, num_subjects=8)
  test = generate_split('test', num_clips=60, seed=0, num_subjects=5)
  train_subjects = {c.meta['subject'] for c in train}
  test_subjects = {c.meta['subject'] for c in test}
  assert train_subjects <= set(range(8)) and len(train_subjects) > 1
  assert test_subjects <= set(range(1000, 1005)) and len(test_subjects) > 1
  assert not train_subjects & test_subjects


def test_shapes_dtypes_labels(train_clips):
  num_joints = get_layout('openpose22').num_joints
  for clip in train_clips:
    clip.validate(num_joints=num_joints, num_classes=NUM_CLASSES)
    num_frames = clip.num_frames
    assert synthetic.CLIP_FRAMES[0] <= num_frames <= synthetic.CLIP_FRAMES[1]
    assert clip.keypoints.shape == (num_frames, num_joints, 2)
    assert clip.confidence.shape == (num_frames, num_joints)
    assert clip.keypoints.dtype == np.float32 and clip.confidence.dtype == np.float32
    assert clip.layout == 'openpose22'
    assert clip.meta['class_name'] == CLASSES[clip.label].name
    assert clip.meta['type'] == CLASSES[clip.label].type
    assert np.all((clip.confidence >= 0) & (clip.confidence <= 1))
    width, height = synthetic.IMAGE_SIZE
    assert np.all((clip.keypoints >= 0) & (clip.keypoints < [width, height]))
  assert len({c.clip_id for c in train_clips}) == len(train_clips)


def test_classes_are_balanced():
  labels = [c.label for c in generate_split('test', num_clips=3 * NUM_CLASSES + 4, seed=2)]
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  assert counts.sum() == 3 * NUM_CLASSES + 4
  assert counts.min() == 3 and counts.max() == 4


def test_dropped_joints_have_zero_coordinates_and_confidence(train_clips):
  dropped_total = 0
  for clip in train_clips:
    dropped = clip.confidence == 0
    at_origin = np.all(clip.keypoints == 0, axis=-1)
    np.testing.assert_array_equal(dropped, at_origin)
    dropped_total += dropped.sum()
  assert dropped_total > 0  # the nuisance is really there


def test_action_inside_the_clip(train_clips):
  for clip in train_clips:
    onset, length = clip.meta['onset'], clip.meta['action_length']
    assert synthetic.ACTION_FRAMES[0] <= length <= synthetic.ACTION_FRAMES[1]
    assert 0 <= onset and onset + length <= clip.num_frames
  assert len({c.meta['onset'] for c in train_clips}) > 5  # onsets really vary


@pytest.mark.parametrize('layout', ['openpose22', 'openpose28'])
def test_every_class_in_layout(layout):
  clips = generate_split('train', num_clips=NUM_CLASSES, seed=5, layout=layout)
  assert [c.label for c in clips] == list(range(NUM_CLASSES))
  num_joints = get_layout(layout).num_joints
  for clip in clips:
    assert clip.layout == layout and clip.keypoints.shape[1] == num_joints
    assert np.isfinite(clip.keypoints).all() and (clip.confidence > 0).mean() > 0.8


def test_layouts_hold_the_same_joints_by_name():
  small, large = get_layout('openpose22'), get_layout('openpose28')
  a = generate_split('test', num_clips=4, seed=9, layout='openpose22')
  b = generate_split('test', num_clips=4, seed=9, layout='openpose28')
  index = small.map_from(large)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.keypoints, y.keypoints[:, index])
    np.testing.assert_array_equal(x.confidence, y.confidence[:, index])


@pytest.mark.parametrize('layout', ['coco17', 'body25', 'kinect20'])
def test_layout_without_the_needed_joints_is_refused(layout):
  with pytest.raises(LayoutError, match=f"'{layout}'.*lacks"):
    generate_split('train', num_clips=1, seed=0, layout=layout)


def test_bad_arguments():
  with pytest.raises(ValueError, match='split'):
    generate_split('val', num_clips=1, seed=0)
  with pytest.raises(ValueError, match='num_subjects'):
    generate_split('train', num_clips=1, seed=0, num_subjects=0)
  with pytest.raises(ValueError, match='seed'):
    generate_split('train', num_clips=1, seed=-1)


# ---------------------------------------------------------------------------------------------
# The design: position classes need WHERE, motion classes need HOW.

def _body_frame(clip) -> tuple[np.ndarray, np.ndarray]:
  """Coordinates relative to the neck, in units and axes of the shoulder line; valid mask."""
  layout = get_layout(clip.layout)
  kp, seen = clip.keypoints.astype(np.float64), clip.confidence > 0
  root, (right, left) = layout.center_joints[0], layout.scale_pair
  good = seen[:, root] & seen[:, right] & seen[:, left]
  axis = kp[:, left] - kp[:, right]
  axis /= np.where(good, (axis ** 2).sum(-1), 1.0)[:, None]
  rel = kp - kp[:, root:root + 1]
  x = (rel * axis[:, None]).sum(-1)
  y = rel[..., 1] * axis[:, None, 0] - rel[..., 0] * axis[:, None, 1]
  return np.stack([x, y], axis=-1), seen & good[:, None]


def _mean_position(clip) -> np.ndarray:
  """Per-clip mean body-relative position of every joint (so of every entity)."""
  rel, valid = _body_frame(clip)
  return ((rel * valid[..., None]).sum(0) / np.maximum(valid.sum(0), 1)[:, None]).ravel()


def _middle_frame(clip) -> np.ndarray:
  """Body-relative pose of the single frame in the middle of the action (0 where dropped)."""
  rel, valid = _body_frame(clip)
  t = clip.meta['onset'] + clip.meta['action_length'] // 2
  return (rel[t] * valid[t, :, None]).ravel()


def _motion_energy(clip) -> np.ndarray:
  """Per-joint mean absolute frame difference of body-relative positions."""
  rel, valid = _body_frame(clip)
  step = np.linalg.norm(np.diff(rel, axis=0), axis=-1)
  both = valid[1:] & valid[:-1]
  return (step * both).sum(0) / np.maximum(both.sum(0), 1)


@pytest.fixture(scope='module')
def features():
  train = generate_split('train', num_clips=100 * NUM_CLASSES, seed=0)
  test = generate_split('test', num_clips=50 * NUM_CLASSES, seed=0)
  out = {'y': (np.array([c.label for c in train]), np.array([c.label for c in test]))}
  for name, feature in (('position', _mean_position), ('energy', _motion_energy),
                        ('frame', _middle_frame)):
    out[name] = (np.stack([feature(c) for c in train]), np.stack([feature(c) for c in test]))
  out['both'] = tuple(np.concatenate([p, e], axis=1)
                      for p, e in zip(out['position'], out['energy']))
  return out


def _recall(features, name: str, classes: list[int]) -> np.ndarray:
  """Per-class test recall of a logistic regression trained on `classes` only."""
  (x_train, x_test), (y_train, y_test) = features[name], features['y']
  train, test = np.isin(y_train, classes), np.isin(y_test, classes)
  model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
  predicted = model.fit(x_train[train], y_train[train]).predict(x_test[test])
  return np.array([np.mean(predicted[y_test[test] == k] == k) for k in classes])


@pytest.fixture(scope='module')
def recall(features):
  """Per-class recall of each feature on all classes (index by label)."""
  everything = list(range(NUM_CLASSES))
  return {name: _recall(features, name, everything)
          for name in ('position', 'energy', 'both', 'frame')}


def test_position_features_decode_position_classes_not_motion_classes(recall):
  assert recall['position'][POSITION].mean() > recall['position'][MOTION].mean() + 0.15


def test_motion_energy_decodes_motion_classes_better_than_position_classes(recall):
  energy, position = recall['energy'], recall['position']
  assert energy[MOTION].mean() > energy[POSITION].mean() + 0.05
  assert energy[MOTION].mean() > position[MOTION].mean() + 0.1


def test_one_frame_shows_where_not_how(recall):
  # Even the frame in the middle of the action (a cheat: it uses the true onset) shows position
  # classes, but not motion classes.
  assert recall['frame'][POSITION].mean() > recall['frame'][MOTION].mean() + 0.2


def test_same_place_pairs_need_motion(features):
  names = class_names()
  by_energy = []
  for still, moving in SAME_PLACE_PAIRS:
    pair = [names.index(still), names.index(moving)]
    assert _recall(features, 'position', pair).mean() < 0.7  # near chance (0.5): same place
    by_energy.append(_recall(features, 'energy', pair).mean())
  assert min(by_energy) > 0.55 and np.mean(by_energy) > 0.7


def test_no_trivial_feature_solves_the_benchmark(recall):
  position, energy = recall['position'].mean(), recall['energy'].mean()
  assert max(position, energy) < 0.7
  assert recall['both'].mean() > max(position, energy) + 0.1  # where and how together do better

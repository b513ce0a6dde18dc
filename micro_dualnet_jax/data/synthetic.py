"""A procedural synthetic micro-action benchmark that needs both the ST and the TS path.

iMiGUE and MA-52 need signed agreements, so the default dataset is generated here. It keeps what
the method is about: some classes are defined by WHERE a body part is held (a hand over the mouth,
arms crossed, the head tilted), others by HOW a body part moves (nodding, finger tapping, rubbing
the eyes). Neither one frame's pose nor the amount of motion decodes the label on its own:

  - every motion class happens where another class holds still (hand_at_eye / rub_eyes,
    clasp_hands / rub_hands, hold_arm / scratch_arm) or at the resting pose that every clip
    starts from (tap_fingers, nod, shake_head, shrug), and idle habits (curled fingers, a lowered
    or turned head, tense shoulders) overlap a single frame of the movement;
  - every position class is reached by the same kind of move as others (a hand from rest to the
    face, the chest or the other arm and back; a head roll, as in a glance aside), and the same
    motion happens at different places (rub_eyes / rub_hands: a small circular rub).

On top of that, a real recogniser has to see past subjects' proportions and habits, idle sway
and breathing, camera rotation, scale and translation, keypoint jitter, dropped joints, the
action's random onset inside a longer clip, and distractor movements (glances, hand shifts,
illustrative gestures, posture shifts) of the body parts the action leaves free (and of the busy
parts outside the action window). Hand-crafted window-free features (percentiles and band powers
of body-relative joint tracks) with a logistic regression reach about 90% Top-1; per-clip mean
positions or mean motion energy alone stay near 50%.

A clip is built in four steps, all vectorised over frames:
  1. a subject (body proportions and idle habits, fixed by seed and subject id);
  2. per-frame control signals in body units (y down, neck at the origin, shoulder width ~1):
     head yaw/pitch/roll, shoulder lift, torso sway, breathing, elbow and wrist positions, hand
     direction and finger flexion; idle drift, then distractor movements of the body parts the
     class leaves free, then the action inside its window [onset, onset + length);
  3. forward kinematics to a canonical named skeleton (OpenPose BODY_25 joints + 5 finger points
     per hand), seated, upper body swaying about the hips;
  4. a camera (rotation, scale, translation) to 1920x1080 pixels, keypoint jitter that grows as
     confidence falls, dropped joints (random, in bursts, occluded by a hand, or out of frame:
     coordinates 0 and confidence 0), then conversion to the requested layout by joint name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from micro_dualnet_jax.data.clip import Clip
from micro_dualnet_jax.skeleton import LayoutError, get_layout

FPS = 30
IMAGE_SIZE = (1920, 1080)  # (width, height) in pixels, as iMiGUE.
CLIP_FRAMES = (60, 150)  # inclusive range of clip lengths
ACTION_FRAMES = (30, 90)  # 1-3 s at 30 fps
# First subject id of each split: the ranges never overlap, so splits never share subjects.
SPLIT_SUBJECT_BASE = {'train': 0, 'test': 1000}
_MAX_SUBJECTS = 1000
_DEFAULT_SUBJECTS = {'train': 200, 'test': 50}
_CLIP_STREAM, _SUBJECT_STREAM = 1, 2  # keep the clip and subject random streams apart

_RIGHT, _LEFT = 0, 1
_SIDE_SIGN = np.array([-1.0, 1.0])  # the person's right is image-left (x < 0) when facing us


@dataclasses.dataclass(frozen=True)
class SyntheticClass:
  """Ground truth of one synthetic class.

  Attributes:
    name: class name.
    entity: the body part (layout entity name) that defines the class.
    type: 'position' (defined by where the entity is held) or 'motion' (by how it moves).
    description: what the subject does.
  """
  name: str
  entity: str
  type: str
  description: str


CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass('cover_mouth', 'right_hand', 'position',
                   'right hand held over the mouth'),
    SyntheticClass('touch_chest', 'right_hand', 'position',
                   'right palm held flat on the chest'),
    SyntheticClass('touch_forehead', 'right_hand', 'position',
                   'right hand held on the forehead'),
    SyntheticClass('hand_at_eye', 'right_hand', 'position',
                   'right fingertips resting still at the right eye (place of rub_eyes)'),
    SyntheticClass('cross_arms', 'left_hand', 'position',
                   'forearms crossed in front of the chest'),
    SyntheticClass('clasp_hands', 'right_hand', 'position',
                   'hands held together in front of the body (place of rub_hands)'),
    SyntheticClass('hold_arm', 'right_hand', 'position',
                   'right hand resting on the left forearm (place of scratch_arm)'),
    SyntheticClass('tilt_head', 'head', 'position',
                   'head held tilted towards the right shoulder'),
    SyntheticClass('rub_eyes', 'right_hand', 'motion',
                   'right fingertips rubbing the right eye in small circles, 2.5-4.5 Hz'),
    SyntheticClass('rub_hands', 'right_hand', 'motion',
                   'right hand rubbing circles on the left palm, 2.5-4.5 Hz'),
    SyntheticClass('scratch_arm', 'right_hand', 'motion',
                   'right hand scratching along the left forearm, 3-6 Hz'),
    SyntheticClass('tap_fingers', 'right_hand', 'motion',
                   'right fingers tapping at the resting place, 3-6 Hz'),
    SyntheticClass('nod', 'head', 'motion', 'head nodding down and up, 1.5-3 Hz'),
    SyntheticClass('shake_head', 'head', 'motion', 'head turning left and right, 1.5-3.5 Hz'),
    SyntheticClass('shrug', 'torso', 'motion', 'shoulders raised and dropped 1-3 times'),
)


def class_names() -> list[str]:
  """Names of the synthetic classes, by label."""
  return [c.name for c in CLASSES]


# ---------------------------------------------------------------------------------------------
# The canonical skeleton (joint names as in the layout registry).

_HEAD_JOINTS = ('nose', 'right_eye', 'left_eye', 'right_ear', 'left_ear')
_FINGERS = tuple(tuple(f'{side}_finger_{i}' for i in range(1, 6)) for side in ('right', 'left'))
_LEGS = tuple(f'{side}_{part}' for part in ('hip', 'knee', 'ankle', 'big_toe', 'small_toe', 'heel')
              for side in ('right', 'left'))
_JOINTS: tuple[str, ...] = (
    _HEAD_JOINTS + ('neck', 'right_shoulder', 'left_shoulder', 'right_elbow', 'left_elbow',
                    'right_wrist', 'left_wrist') + _FINGERS[0] + _FINGERS[1] + ('mid_hip',) + _LEGS)
_LOWER_START = _JOINTS.index('mid_hip')  # joints from here on do not sway with the upper body
# The classes are defined on the upper body with finger points: a layout must have all of these.
_REQUIRED_JOINTS = get_layout('openpose22').joint_names

# Head points in a head frame (x right in the image, y down, z towards the camera), relative to
# the top of the neck, for a head of size 1. Landmarks are the places hands go to.
_HEAD_3D = np.array([[0.0, -0.42, 0.22], [-0.09, -0.52, 0.17], [0.09, -0.52, 0.17],
                     [-0.19, -0.47, -0.02], [0.19, -0.47, -0.02]])
_LANDMARKS_3D = {'mouth': (0.0, -0.33, 0.2), 'forehead': (0.0, -0.66, 0.15),
                 'right_eye': tuple(_HEAD_3D[1])}
# Fingertips: length from the wrist and angle from the hand direction (thumb first; the sign of
# the angle is mirrored between hands).
_FINGER_LENGTH = np.array([0.13, 0.2, 0.21, 0.19, 0.16])
_FINGER_SPREAD = np.array([0.6, 0.22, 0.0, -0.18, -0.36])


def _base_confidence() -> np.ndarray:
  """(N,) typical detector confidence per canonical joint: fingers and legs are the hardest."""
  conf = np.ones(len(_JOINTS))
  for j, name in enumerate(_JOINTS):
    if 'finger' in name:
      conf[j] = 0.7
    elif name in _HEAD_JOINTS:
      conf[j] = 0.95
    elif j >= _LOWER_START:
      conf[j] = 0.85
  return conf


_BASE_CONFIDENCE = _base_confidence()


# ---------------------------------------------------------------------------------------------
# Signals.

def _window(t: np.ndarray, start: float, stop: float, ramp: float) -> np.ndarray:
  """0 outside [start, stop], 1 inside after a smooth ramp of `ramp` frames at both ends."""
  x = np.clip(np.minimum(t - start, stop - t) / max(ramp, 1.0), 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def _drift(rng: np.random.Generator, t: np.ndarray, dims: int, amp: float,
           max_hz: float = 0.5, terms: int = 3) -> np.ndarray:
  """(T, dims) smooth zero-mean random signal (a few slow sinusoids) with std `amp`."""
  hz = rng.uniform(0.05, max_hz, (terms, dims))
  phase = rng.uniform(0.0, 2 * np.pi, (terms, dims))
  waves = np.sin(2 * np.pi * hz * t[:, None, None] / FPS + phase)
  return amp * np.sqrt(2.0 / terms) * waves.sum(axis=1)


def _wrap(angle: np.ndarray) -> np.ndarray:
  return (angle + np.pi) % (2 * np.pi) - np.pi


def _project_head(points: np.ndarray, angles: np.ndarray, pivot: np.ndarray,
                  size: float) -> np.ndarray:
  """Rotates head-frame points (n, 3) by yaw, pitch, roll (T, 3) about `pivot` (T, 2).

  Orthographic projection to the image plane; returns (T, n, 2).
  """
  x, y, z = size * points.T
  cy, sy = np.cos(angles[:, :1]), np.sin(angles[:, :1])
  cp, sp = np.cos(angles[:, 1:2]), np.sin(angles[:, 1:2])
  cr, sr = np.cos(angles[:, 2:]), np.sin(angles[:, 2:])
  x1, z1 = x * cy + z * sy, z * cy - x * sy  # yaw: turn left / right
  y2 = y * cp + z1 * sp  # pitch: positive nods the face down
  x3, y3 = x1 * cr - y2 * sr, x1 * sr + y2 * cr  # roll: tilt in the image plane
  return pivot[:, None] + np.stack([x3, y3], axis=-1)


# ---------------------------------------------------------------------------------------------
# Subjects.

@dataclasses.dataclass(frozen=True)
class _Subject:
  """Body proportions (body units) and idle habits of one person."""
  id: int
  shoulder_half: float
  shoulder_y: float
  neck_len: float
  head_size: float
  torso_len: float
  hip_half: float
  leg: float
  arm: float
  hand: float
  head_habit: np.ndarray  # (3,) resting yaw, pitch, roll (rad)
  restless: float  # std of the slow head drift (rad)
  sway: float  # std of the torso sway (rad)
  breath_hz: float
  breath_amp: float
  rest_wrist: np.ndarray  # (2, 2) resting wrist position, right / left
  fidget: float  # probability of each distractor movement in a clip


def _subject(seed: int, subject_id: int) -> _Subject:
  rng = np.random.default_rng([seed, _SUBJECT_STREAM, subject_id])
  shoulder_y = rng.uniform(0.03, 0.09)
  arm = rng.uniform(0.9, 1.1)
  rest_wrist = np.stack([_SIDE_SIGN * rng.uniform(0.18, 0.45, 2),
                         shoulder_y + arm * rng.uniform(0.8, 1.15, 2)], axis=-1)
  return _Subject(
      id=subject_id, shoulder_half=rng.uniform(0.44, 0.56), shoulder_y=shoulder_y,
      neck_len=rng.uniform(-0.04, 0.06), head_size=rng.uniform(0.85, 1.15),
      torso_len=rng.uniform(1.15, 1.4), hip_half=rng.uniform(0.22, 0.3),
      leg=rng.uniform(0.9, 1.1), arm=arm, hand=rng.uniform(0.85, 1.15),
      head_habit=rng.uniform(-1, 1, 3) * np.array([0.15, 0.12, 0.06]),
      restless=rng.uniform(0.03, 0.1), sway=rng.uniform(0.005, 0.03),
      breath_hz=rng.uniform(0.2, 0.4), breath_amp=rng.uniform(0.004, 0.015),
      rest_wrist=rest_wrist, fidget=rng.uniform(0.3, 0.7))


# ---------------------------------------------------------------------------------------------
# The scene: control signals of one clip, in body units.

class _Scene:
  """Per-frame control signals of one clip; actions and distractors edit them in place."""

  def __init__(self, subject: _Subject, rng: np.random.Generator, num_frames: int, onset: int,
               length: int):
    s = subject
    self.subject, self.rng = s, rng
    self.t = t = np.arange(num_frames, dtype=np.float64)
    self.onset, self.end = onset, onset + length - 1
    self.head = s.head_habit + _drift(rng, t, 3, s.restless)  # yaw, pitch, roll
    self.lift = np.full((num_frames, 2), rng.uniform(0.0, 0.05))  # tense shoulders, right/left
    self.sway = _drift(rng, t, 1, s.sway)[:, 0]
    self.breath = s.breath_amp * np.sin(
        2 * np.pi * s.breath_hz * t / FPS + rng.uniform(0, 2 * np.pi))
    wrist = s.rest_wrist + rng.uniform(-0.1, 0.1, (2, 2))
    elbow = np.stack([_SIDE_SIGN * (s.shoulder_half + rng.uniform(0.04, 0.14, 2)),
                      np.full(2, s.shoulder_y + 0.6 * s.arm)], axis=-1)
    self.wrist = wrist + _drift(rng, t, 4, 0.015).reshape(-1, 2, 2)  # (T, side, xy)
    self.elbow = elbow + _drift(rng, t, 4, 0.02).reshape(-1, 2, 2)
    forearm = self.wrist - self.elbow
    self.hand_angle = (np.arctan2(forearm[..., 1], forearm[..., 0])
                       + _SIDE_SIGN * rng.uniform(-0.3, 0.3, 2))  # (T, side)
    curl = rng.uniform(0.0, 0.6, (2, 1)) + rng.uniform(-0.1, 0.1, (2, 5))
    self.flex = np.clip(curl + _drift(rng, t, 10, 0.04).reshape(-1, 2, 5), 0.0, 1.0)
    self.occlusion = np.zeros((num_frames, len(_JOINTS)))

  # Timing.

  def hold(self) -> tuple[np.ndarray, float]:
    """Envelope of a placed action (move in, hold, move out) and its ramp in frames."""
    ramp = min(self.rng.uniform(5.0, 11.0), (self.end - self.onset) / 4)
    return _window(self.t, self.onset, self.end, ramp), ramp

  def inside(self, ramp: float = 0.0) -> np.ndarray:
    """Envelope of a movement inside the action window, after a placement ramp."""
    return _window(self.t, self.onset + ramp, self.end - ramp, 3.0)

  def phase(self, low_hz: float, high_hz: float) -> np.ndarray:
    """(T,) phase of an oscillation starting at the onset, with a random slow frequency drift."""
    hz = self.rng.uniform(low_hz, high_hz) * (1.0 + _drift(self.rng, self.t, 1, 0.08)[:, 0])
    start = self.rng.uniform(0, 2 * np.pi)
    return 2 * np.pi * np.cumsum(hz * (self.t >= self.onset)) / FPS + start

  # Geometry.

  def neck(self) -> np.ndarray:
    """(T, 2) neck position: breathing and shrugging lift it."""
    y = -0.6 * self.breath - 0.5 * self.lift.mean(axis=1)
    return np.stack([np.zeros_like(y), y], axis=-1)

  def head_points(self, points: np.ndarray) -> np.ndarray:
    """(T, n, 2) head-frame points (n, 3) under the current head pose."""
    pivot = self.neck() - np.array([0.0, self.subject.neck_len])
    return _project_head(points, self.head, pivot, self.subject.head_size)

  def landmark(self, name: str) -> np.ndarray:
    """(T, 2) a face landmark ('mouth', 'forehead', 'right_eye') under the current head pose."""
    return self.head_points(np.array([_LANDMARKS_3D[name]]))[:, 0]

  def place_arm(self, side: int, env: np.ndarray, wrist: np.ndarray,
                elbow: tuple[float, float], angle: float) -> None:
    """Moves one arm from where it is towards a target (a per-person variant of it) by `env`."""
    rng, e = self.rng, env[:, None]
    wrist = wrist + rng.normal(0.0, 0.025, 2) + _drift(rng, self.t, 2, 0.006)
    elbow = np.asarray(elbow) * self.subject.arm + rng.normal(0.0, 0.05, 2)
    angle = angle + rng.normal(0.0, 0.15)
    self.wrist[:, side] += e * (wrist - self.wrist[:, side])
    self.elbow[:, side] += e * (elbow - self.elbow[:, side])
    self.hand_angle[:, side] += env * _wrap(angle - self.hand_angle[:, side])

  def occlude(self, names: tuple[str, ...], env: np.ndarray) -> None:
    """Marks joints as hidden (by a hand) to the degree `env`."""
    for name in names:
      j = _JOINTS.index(name)
      self.occlusion[:, j] = np.maximum(self.occlusion[:, j], env)

  # Forward kinematics.

  def skeleton(self) -> np.ndarray:
    """(T, N, 2) canonical joints in body units."""
    s, num_frames = self.subject, len(self.t)
    head = self.head_points(_HEAD_3D)
    neck = self.neck()[:, None]
    shoulders = np.stack([np.broadcast_to(_SIDE_SIGN * s.shoulder_half, (num_frames, 2)),
                          s.shoulder_y - self.breath[:, None] - self.lift], axis=-1)
    finger_angle = self.hand_angle[..., None] + _SIDE_SIGN[:, None] * _FINGER_SPREAD
    finger_len = s.hand * _FINGER_LENGTH * (1.0 - 0.55 * self.flex)
    fingers = self.wrist[:, :, None] + finger_len[..., None] * np.stack(
        [np.cos(finger_angle), np.sin(finger_angle)], axis=-1)
    upper = np.concatenate([head, neck, shoulders, self.elbow, self.wrist,
                            fingers.reshape(num_frames, 10, 2)], axis=1)
    # Sway: the upper body rotates about the hips.
    hip = np.array([0.0, s.torso_len])
    c, si = np.cos(self.sway)[:, None], np.sin(self.sway)[:, None]
    rel = upper - hip
    upper = hip + np.stack([c * rel[..., 0] - si * rel[..., 1],
                            si * rel[..., 0] + c * rel[..., 1]], axis=-1)
    return np.concatenate([upper, self._legs()], axis=1)

  def _legs(self) -> np.ndarray:
    """(T, 13, 2) mid hip and the seated legs (seen from the front), with a little fidgeting."""
    s = self.subject
    # |x| and y below the hips of: hip, knee, ankle, big toe, small toe, heel.
    side = np.array([[s.hip_half, 0.0], [s.hip_half + 0.05, 0.3], [s.hip_half + 0.02, s.leg],
                     [s.hip_half - 0.05, s.leg + 0.1], [s.hip_half + 0.06, s.leg + 0.08],
                     [s.hip_half + 0.02, s.leg + 0.04]])
    mirrored = side[:, None] * np.stack([_SIDE_SIGN, np.ones(2)], axis=-1)  # (6, side, xy)
    legs = np.concatenate([np.zeros((1, 2)), mirrored.reshape(-1, 2)]) + [0.0, s.torso_len]
    return legs + _drift(self.rng, self.t, 2, 0.01)[:, None]


# ---------------------------------------------------------------------------------------------
# Actions. Each edits the scene inside [onset, end]; `_ACTIONS` maps a class name to the action
# and the body parts it uses (distractors only move the other parts).

Action = Callable[[_Scene], None]
_ACTIONS: dict[str, tuple[Action, tuple[str, ...]]] = {}


def _action(name: str, *parts: str) -> Callable[[Action], Action]:
  def register(fn: Action) -> Action:
    _ACTIONS[name] = (fn, parts)
    return fn
  return register


def _circle(sc: _Scene, env: np.ndarray, low_hz: float, high_hz: float,
            amp: tuple[float, float]) -> np.ndarray:
  """(T, 2) small elliptic rubbing path, scaled by `env`."""
  phase = sc.phase(low_hz, high_hz)
  radius = sc.rng.uniform(*amp) * np.array([1.0, sc.rng.uniform(0.5, 1.0)])
  return env[:, None] * radius * np.stack([np.cos(phase), np.sin(phase)], axis=-1)


@_action('cover_mouth', 'right_arm')
def _cover_mouth(sc: _Scene) -> None:
  env, _ = sc.hold()
  wrist = sc.landmark('mouth') + np.array([-0.02, 0.13]) * sc.subject.head_size
  sc.place_arm(_RIGHT, env, wrist, (-0.22, 0.62), -np.pi / 2 + 0.15)
  sc.occlude(('nose',), env)


@_action('touch_chest', 'right_arm')
def _touch_chest(sc: _Scene) -> None:
  env, _ = sc.hold()
  sc.place_arm(_RIGHT, env, np.array([-0.12, 0.5]), (-0.55, 0.68), -0.35)


@_action('touch_forehead', 'right_arm')
def _touch_forehead(sc: _Scene) -> None:
  env, _ = sc.hold()
  wrist = sc.landmark('forehead') + np.array([-0.14, 0.1]) * sc.subject.head_size
  sc.place_arm(_RIGHT, env, wrist, (-0.3, 0.45), -0.6)
  sc.occlude(('right_eye',), env)


def _hand_at_eye_place(sc: _Scene, rub: bool) -> None:
  env, ramp = sc.hold()
  wrist = sc.landmark('right_eye') + np.array([-0.07, 0.2]) * sc.subject.head_size
  if rub:
    wrist = wrist + _circle(sc, sc.inside(ramp), 2.5, 4.5, (0.04, 0.07))
  sc.place_arm(_RIGHT, env, wrist, (-0.3, 0.62), -np.pi / 2 + 0.35)
  sc.occlude(('right_eye',), env)


@_action('hand_at_eye', 'right_arm')
def _hand_at_eye(sc: _Scene) -> None:
  _hand_at_eye_place(sc, rub=False)


@_action('rub_eyes', 'right_arm')
def _rub_eyes(sc: _Scene) -> None:
  _hand_at_eye_place(sc, rub=True)


@_action('cross_arms', 'right_arm', 'left_arm')
def _cross_arms(sc: _Scene) -> None:
  env, _ = sc.hold()
  height = sc.rng.uniform(0.4, 0.65)
  sc.place_arm(_RIGHT, env, np.array([0.4, height]), (-0.35, 0.6), -1.0)
  sc.place_arm(_LEFT, env, np.array([-0.4, height - 0.04]), (0.35, 0.6), -np.pi + 1.0)


def _hands_together(sc: _Scene, rub: bool) -> None:
  env, ramp = sc.hold()
  centre = np.array([sc.rng.uniform(-0.05, 0.05), sc.rng.uniform(0.55, 0.9)])
  right, left = centre - [0.07, 0.0], centre + [0.07, 0.0]
  if rub:  # the right hand circles on the left palm, which gives a little
    path = _circle(sc, sc.inside(ramp), 2.5, 4.5, (0.05, 0.08))
    right, left = right + path, left - 0.3 * path
  sc.place_arm(_RIGHT, env, right, (-0.55, 0.62), -0.3)
  sc.place_arm(_LEFT, env, left, (0.55, 0.62), np.pi + 0.3)


@_action('clasp_hands', 'right_arm', 'left_arm')
def _clasp_hands(sc: _Scene) -> None:
  _hands_together(sc, rub=False)


@_action('rub_hands', 'right_arm', 'left_arm')
def _rub_hands(sc: _Scene) -> None:
  _hands_together(sc, rub=True)


def _hand_on_forearm(sc: _Scene, scratch: bool) -> None:
  env, ramp = sc.hold()
  forearm = sc.wrist[:, _LEFT] - sc.elbow[:, _LEFT]
  wrist = sc.elbow[:, _LEFT] + 0.5 * forearm + np.array([-0.12, -0.02])
  if scratch:
    inside = sc.inside(ramp)
    stroke = sc.phase(3.0, 6.0)
    along = forearm / np.linalg.norm(forearm, axis=-1, keepdims=True)
    wrist = wrist + (inside * sc.rng.uniform(0.05, 0.09) * np.sin(stroke))[:, None] * along
    sc.flex[:, _RIGHT] += (inside * 0.3 * (0.5 - 0.5 * np.cos(stroke)))[:, None]
  sc.place_arm(_RIGHT, env, wrist, (-0.5, 0.72), 0.15)


@_action('hold_arm', 'right_arm', 'left_arm')
def _hold_arm(sc: _Scene) -> None:
  _hand_on_forearm(sc, scratch=False)


@_action('scratch_arm', 'right_arm', 'left_arm')
def _scratch_arm(sc: _Scene) -> None:
  _hand_on_forearm(sc, scratch=True)


@_action('tilt_head', 'head')
def _tilt_head(sc: _Scene) -> None:
  env, _ = sc.hold()
  sc.head[:, 2] -= env * sc.rng.uniform(0.25, 0.45)  # negative roll: towards the right


@_action('tap_fingers', 'right_arm')
def _tap_fingers(sc: _Scene) -> None:
  # All fingers together, or rolling from the little finger to the index.
  lag = sc.rng.choice([0.0, sc.rng.uniform(0.5, 1.2)]) * np.arange(5)[::-1]
  phase = sc.phase(3.0, 6.0)[:, None] - lag
  tap = sc.rng.uniform(0.5, 1.0) * (0.5 - 0.5 * np.cos(phase)) * sc.inside()[:, None]
  tap[:, 0] *= 0.3  # the thumb barely moves
  sc.flex[:, _RIGHT] += tap * (1.0 - sc.flex[:, _RIGHT])  # a curled hand has less room to tap


@_action('nod', 'head')
def _nod(sc: _Scene) -> None:
  sc.head[:, 1] += sc.inside() * sc.rng.uniform(0.2, 0.4) * (
      0.5 - 0.5 * np.cos(sc.phase(1.5, 3.0)))


@_action('shake_head', 'head')
def _shake_head(sc: _Scene) -> None:
  sc.head[:, 0] += sc.inside() * sc.rng.uniform(0.25, 0.5) * np.sin(sc.phase(1.5, 3.5))


@_action('shrug', 'shoulders')
def _shrug(sc: _Scene) -> None:
  count = int(sc.rng.integers(1, 4))
  span = (sc.end - sc.onset) / count
  width = min(sc.rng.uniform(12.0, 21.0), span)
  bumps = sum(_window(sc.t, sc.onset + (k + 0.5) * span - width / 2,
                      sc.onset + (k + 0.5) * span + width / 2, width / 2) for k in range(count))
  lift = sc.rng.uniform(0.07, 0.14) * bumps[:, None] * sc.rng.uniform(0.8, 1.0, 2)
  sc.lift += lift
  sc.elbow[..., 1] -= 0.8 * lift
  sc.wrist[..., 1] -= 0.3 * lift


def _check_registry() -> None:
  names = set(class_names())
  if names != set(_ACTIONS) or len(names) != len(CLASSES):
    raise RuntimeError(f'CLASSES and actions disagree: {sorted(names ^ set(_ACTIONS))}')


_check_registry()


# ---------------------------------------------------------------------------------------------
# Distractors: unrelated movements of the body parts the action leaves free.

def _event(sc: _Scene, min_frames: float, max_frames: float,
           outside_action: bool) -> np.ndarray | None:
  """(T,) a transient bump at a random time; None when it must avoid the action and cannot."""
  width = sc.rng.uniform(min_frames, max_frames)
  if outside_action:  # centre before the onset or after the end, the bump clear of the action
    before, after = sc.onset, len(sc.t) - 1 - sc.end
    if before + after <= 0:
      return None
    u = sc.rng.uniform(0, before + after)
    centre = u - width / 2 if u < before else sc.end + width / 2 + (u - before)
  else:
    centre = sc.rng.uniform(0, len(sc.t))
  return _window(sc.t, centre - width / 2, centre + width / 2, width / 2)


def _glance(sc: _Scene, bump: np.ndarray) -> None:
  """A look aside: the head turns, and often leans, then comes back."""
  sc.head += bump[:, None] * sc.rng.choice([-1.0, 1.0], 3) * sc.rng.uniform(0, 1, 3) * [
      0.4, 0.12, 0.4]


def _shift_hand(sc: _Scene, side: int, bump: np.ndarray) -> None:
  """Repositions one hand a little: a transient move, or a move that stays."""
  move = np.maximum.accumulate(bump) if sc.rng.random() < 0.5 else bump
  offset = np.array([sc.rng.uniform(-0.15, 0.15), sc.rng.uniform(-0.2, 0.05)])
  sc.wrist[:, side] += move[:, None] * offset
  sc.elbow[:, side] += move[:, None] * 0.5 * offset
  sc.flex[:, side] = np.clip(sc.flex[:, side] + move[:, None] * sc.rng.uniform(-0.3, 0.3), 0, 1)


def _gesture(sc: _Scene, side: int, bump: np.ndarray) -> None:
  """An illustrative gesture: the hand goes out in front of its own side and comes back."""
  sign = _SIDE_SIGN[side]
  wrist = np.array([sign * sc.rng.uniform(0.35, 0.8), sc.rng.uniform(0.3, 0.85)])
  elbow = (sign * (sc.subject.shoulder_half + sc.rng.uniform(0.1, 0.3)), sc.rng.uniform(0.45, 0.7))
  sc.place_arm(side, bump, wrist, elbow, sc.rng.uniform(-np.pi, np.pi))


def _shift_posture(sc: _Scene, bump: np.ndarray) -> None:
  sc.sway += bump * sc.rng.choice([-1.0, 1.0]) * sc.rng.uniform(0.02, 0.05)


# name: (body part, shortest and longest duration in frames, movement)
_DISTRACTORS: dict[str, tuple[str, float, float, Callable[[_Scene, np.ndarray], None]]] = {
    'glance': ('head', 15, 45, _glance),
    'shift_right_hand': ('right_arm', 20, 50, lambda sc, b: _shift_hand(sc, _RIGHT, b)),
    'shift_left_hand': ('left_arm', 20, 50, lambda sc, b: _shift_hand(sc, _LEFT, b)),
    'gesture_right_hand': ('right_arm', 20, 45, lambda sc, b: _gesture(sc, _RIGHT, b)),
    'gesture_left_hand': ('left_arm', 20, 45, lambda sc, b: _gesture(sc, _LEFT, b)),
    'shift_posture': ('shoulders', 20, 60, _shift_posture),
}


def _distract(sc: _Scene, busy_parts: tuple[str, ...]) -> list[str]:
  """Applies each distractor with the subject's probability; a busy part only moves outside the
  action window. Returns the names of those applied."""
  applied = []
  for name, (part, min_frames, max_frames, move) in _DISTRACTORS.items():
    if sc.rng.random() < sc.subject.fidget:
      bump = _event(sc, min_frames, max_frames, outside_action=part in busy_parts)
      if bump is not None:
        move(sc, bump)
        applied.append(name)
  return applied


# ---------------------------------------------------------------------------------------------
# Observation: camera, detector noise, dropped joints.

def _observe(points: np.ndarray, occlusion: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Body-unit joints (T, N, 2) -> pixel keypoints (T, N, 2) and confidence (T, N)."""
  num_frames, num_joints = points.shape[:2]
  scale = rng.uniform(170.0, 290.0)  # pixels per body unit (about the shoulder width)
  theta = rng.uniform(-0.14, 0.14)
  rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  centre = np.array([rng.uniform(760.0, 1160.0), rng.uniform(300.0, 430.0)])
  pixels = scale * points @ rotation.T + centre

  base = _BASE_CONFIDENCE * (1.0 - 0.5 * occlusion)
  conf = np.clip(rng.uniform(0.55, 0.95) * base + rng.normal(0.0, 0.06, base.shape), 0.05, 1.0)
  sigma = rng.uniform(0.002, 0.007) * scale * (1.6 - conf)  # worse detections move more
  pixels += rng.normal(size=pixels.shape) * sigma[..., None]

  drop_prob = rng.uniform(0.0, 0.03) * (1.0 + 4.0 * (1.0 - _BASE_CONFIDENCE)) + 0.4 * occlusion
  drop = rng.random(conf.shape) < drop_prob
  for _ in range(rng.poisson(1.0)):  # a joint lost for a few consecutive frames
    start, joint = rng.integers(num_frames), rng.integers(num_joints)
    drop[start:start + rng.integers(3, 16), joint] = True
  drop |= ((pixels < 0) | (pixels >= IMAGE_SIZE)).any(axis=-1)
  pixels[drop] = 0.0
  conf[drop] = 0.0
  return pixels.astype(np.float32), conf.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Public API.

def _layout_index(layout_name: str) -> np.ndarray:
  """(V,) canonical joint index of each joint of the layout; refuses layouts that cannot work."""
  layout = get_layout(layout_name)
  lacking = [n for n in _REQUIRED_JOINTS if n not in layout.joint_names]
  unknown = [n for n in layout.joint_names if n not in _JOINTS]
  problems = [f'it is {layout.coord_dims}D'] if layout.coord_dims != 2 else []
  if lacking:
    problems.append(f'it lacks {lacking}, which the synthetic classes are defined on')
  if unknown:
    problems.append(f'the synthetic skeleton has no {unknown}')
  if problems:
    raise LayoutError(
        f'cannot generate synthetic clips in layout {layout_name!r} (a 2D layout with every '
        f'openpose22 joint is needed, e.g. openpose22, openpose28, openpose35): '
        + '; '.join(problems))
  return np.array([_JOINTS.index(n) for n in layout.joint_names])


def _generate_clip(label: int, rng: np.random.Generator,
                   subject: _Subject) -> tuple[np.ndarray, np.ndarray, dict]:
  """One clip in canonical joints: keypoints (T, N, 2), confidence (T, N) and its meta."""
  num_frames = int(rng.integers(CLIP_FRAMES[0], CLIP_FRAMES[1] + 1))
  length = int(rng.integers(ACTION_FRAMES[0], min(ACTION_FRAMES[1], num_frames) + 1))
  onset = int(rng.integers(0, num_frames - length + 1))
  scene = _Scene(subject, rng, num_frames, onset, length)
  cls = CLASSES[label]
  action, parts = _ACTIONS[cls.name]
  distractors = _distract(scene, parts)
  action(scene)
  keypoints, confidence = _observe(scene.skeleton(), scene.occlusion, rng)
  meta = {'subject': subject.id, 'onset': onset, 'action_length': length, 'type': cls.type,
          'class_name': cls.name, 'entity': cls.entity, 'fps': FPS, 'image_size': IMAGE_SIZE,
          'distractors': tuple(distractors)}
  return keypoints, confidence, meta


def generate_split(split: str, *, num_clips: int, seed: int, layout: str = 'openpose22',
                   num_subjects: int | None = None) -> list[Clip]:
  """Generates one split of the synthetic micro-action benchmark.

  Args:
    split: 'train' or 'test'. Train subjects have ids 0.., test subjects 1000..: the two splits
      never share a person.
    num_clips: number of clips; labels cycle through the classes (balanced to within one clip).
    seed: base seed. Same arguments give bit-identical clips; clip i does not depend on
      num_clips, and a subject id is the same person in every split call with this seed.
    layout: a registered 2D layout holding every `openpose22` joint (e.g. 'openpose22',
      'openpose28', 'openpose35'); joints are converted by name.
    num_subjects: people in the split (default 40 for train, 20 for test), at most 1000.

  Returns:
    The clips, `Clip.meta` holding subject, onset and action_length (frames), type
    ('position' | 'motion'), class_name, entity, fps, image_size and distractors.
  """
  if split not in SPLIT_SUBJECT_BASE:
    raise ValueError(f'unknown split {split!r}; expected one of {sorted(SPLIT_SUBJECT_BASE)}')
  if num_clips < 0:
    raise ValueError(f'num_clips must be >= 0, got {num_clips}')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  num_subjects = _DEFAULT_SUBJECTS[split] if num_subjects is None else num_subjects
  if not 1 <= num_subjects <= _MAX_SUBJECTS:
    raise ValueError(f'num_subjects must be in 1..{_MAX_SUBJECTS}, got {num_subjects}')
  index = _layout_index(layout)
  base = SPLIT_SUBJECT_BASE[split]
  split_code = list(SPLIT_SUBJECT_BASE).index(split)
  subjects: dict[int, _Subject] = {}
  clips = []
  for i in range(num_clips):
    rng = np.random.default_rng([seed, _CLIP_STREAM, split_code, i])
    subject_id = base + int(rng.integers(num_subjects))
    if subject_id not in subjects:
      subjects[subject_id] = _subject(seed, subject_id)
    label = i % len(CLASSES)
    keypoints, confidence, meta = _generate_clip(label, rng, subjects[subject_id])
    clips.append(Clip(
        clip_id=f'synthetic_{split}_{i:06d}', keypoints=keypoints[:, index],
        confidence=confidence[:, index], label=label, layout=layout,
        source=f'synthetic:{split}:seed={seed}', meta=meta))
  return clips

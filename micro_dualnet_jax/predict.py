"""Prediction on new pose data and long recordings (`--mode=predict`).

    python main.py --mode=predict --config=configs/synthetic.py --workdir=<trained run> \
        --input=<OpenPose JSON folder | recording.npy | *_light_hand.csv | clips.pkl>

**Which config.** The model is rebuilt from `<workdir>/config.json`, the config the run was trained
with; the `--config` on the command line only supplies the `predict` options (its model section
is ignored, and a difference from the trained one is printed as a note).

**Inputs.** A folder of OpenPose per-frame JSON (one recording per video in it), a `.npy` array
(T, V, C) with C = the coordinates or the coordinates + a confidence channel, an iMiGUE raw CSV
(`*_light_hand.csv`) or a PYSKL pickle (one recording per clip in it). The joints must be the
trained model's layout, or convertible to it by joint name (`Layout.map_from`: e.g. OpenPose
BODY_25 + hand tips, `openpose35`, gives `openpose22`); the conversion is printed. The layout of an
array is recognised by its joint count (or named with `input_layout`).

**Frames with nobody.** A frame where no joint of the model's layout is detected (OpenPose's empty
`people`, an all-zero row) is a 'no person' frame: counted, reported, and never an error. Such
frames are dropped from a window before the model samples its frames (the model sees the frames
with a person, in their order), and the forward pass also masks any that reach it out of the
frame mask. A window with nobody in it is not run and gets no prediction ('no person'); every
other window gets one, so every frame with a person gets a label.

**Short inputs** (at most one window): clip-level top-k classes and the routing weights per body
part, printed and written to `prediction.json` (plus `clip.gif`, see `render_clip`).

**Long inputs** are cut into windows of `window` frames every `stride` frames (the last window
ends at the last frame) and run through one jit-compiled step in fixed-size batches (the last
batch padded with empty rows that are dropped). Defaults:

  window = min(2 * model.num_frames, data.max_frames). The model sees num_frames frames sampled
           uniformly from a whole training clip; training clips hold one 1-3 s micro-action with
           some context, about twice num_frames long (synthetic: 60-150 frames for T = 48;
           paper default T = 64 gives 128 frames, ~4 s at 30 fps), and never more than
           data.max_frames (longer ones are subsampled by the loader). A window this long shows
           the model the temporal density it was trained at.
  stride = window // 2, so every frame (except the first and last half window) is seen by two.
  smoothing = the stride rounded up to an odd number of frames (see `frame_timeline`).

Outputs (in `output_dir`, default `<workdir>/predict/<input name>/`):
  windows.csv    one row per window: start/end frame and seconds, frames with a person,
                 status ('ok' | 'no person'), top-k labels and probabilities, the ST and TS
                 routing weight of every entity;
  timeline.csv   the smoothed per-frame timeline as segments (start, end, label);
  summary.json   settings, frame counts, window counts, percent of time per action, mean
                 routing weights per entity and per predicted action;
  timeline.png   the timeline, the window probabilities and the routing weights over time.

**Percent of time.** Every frame gets exactly one label: 'no person', or the micro-action of the
smoothed timeline. `percent_of_time` divides the frames of each label by all frames (the values,
'no person' included, sum to 100); `percent_of_person_time` leaves the 'no person' frames out.
A model whose class list has a background class (named by `background_class`, default
'background') reports its share like any class and names it in `summary.json`
('background_percent'); it is never merged into 'no person', which only counts frames with nobody
detected.

**Options** are function parameters; a parameter left at None is read from `config.predict`
when the run config has that section, else the default above (`PredictOptions`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from matplotlib import colormaps
from matplotlib.animation import PillowWriter
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax import report, sharding, train
from micro_dualnet_jax.data import augment, datasets
from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers import (
    annotation_to_clip, load_pyskl, read_openpose_folder, read_skeleton_csv)
from micro_dualnet_jax.data.readers._common import presence_confidence
from micro_dualnet_jax.data.readers.imigue import RAW_LAYOUT as IMIGUE_RAW_LAYOUT
from micro_dualnet_jax.skeleton import Layout, LayoutError, get_layout, layout_names
from micro_dualnet_jax.config_utils import dataclass_kwargs

NO_PERSON = 'no person'
NO_PERSON_LABEL = -1
# The layout the OpenPose reader assembles every frame in (BODY_25 + five finger tips per hand).
OPENPOSE_FULL_LAYOUT = 'openpose35'
_WINDOW_FACTOR = 2


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class PredictOptions:
  """Prediction settings (the module docstring explains the defaults).

  Attributes:
    window: frames per window; 0 = min(2 * model.num_frames, data.max_frames).
    stride: frames between window starts; 0 = window // 2.
    batch_size: windows per jit call (rounded up to a multiple of the device count).
    top_k: classes reported per window / clip.
    smoothing: majority-filter width in frames (odd; 1 = off; 0 = the stride rounded up to odd).
    fps: frames per second of the recording, for the times in the outputs.
    input_layout: joint layout of array inputs ('' = recognised by the joint count).
    background_class: name of the model's background class, if it has one.
    render: write `clip.gif` for short inputs.
  """
  window: int = 0
  stride: int = 0
  batch_size: int = 32
  top_k: int = 5
  smoothing: int = 0
  fps: float = 30.0
  input_layout: str = ''
  background_class: str = 'background'
  render: bool = True

  def __post_init__(self):
    checks = [
        (self.window >= 0, f'window must be >= 0 frames (0 = automatic), got {self.window}'),
        (self.stride >= 0, f'stride must be >= 0 frames (0 = window // 2), got {self.stride}'),
        (self.batch_size >= 1, f'batch_size must be >= 1, got {self.batch_size}'),
        (self.top_k >= 1, f'top_k must be >= 1, got {self.top_k}'),
        (self.smoothing >= 0 and (self.smoothing == 0 or self.smoothing % 2 == 1),
         f'smoothing must be 0 (automatic) or an odd number of frames, got {self.smoothing}'),
        (self.fps > 0, f'fps must be > 0, got {self.fps}'),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f'invalid predict option: {message}')

  def resolved(self, config: ml_collections.ConfigDict) -> PredictOptions:
    """The options with window, stride and smoothing filled in for the trained model."""
    window = self.window or default_window(config)
    stride = self.stride or max(window // 2, 1)
    if stride > window:
      raise ValueError(f'invalid predict option: stride {stride} is longer than the window '
                       f'{window}; frames between windows would never be seen')
    smoothing = self.smoothing or (stride | 1)
    return dataclasses.replace(self, window=window, stride=stride, smoothing=smoothing)


def default_window(config: ml_collections.ConfigDict) -> int:
  """min(2 * model.num_frames, data.max_frames) frames (module docstring)."""
  return int(min(_WINDOW_FACTOR * config.model.num_frames, config.data.max_frames))


def predict_options(config: ml_collections.ConfigDict | None = None,
                    **overrides: Any) -> PredictOptions:
  """PredictOptions from `config.predict` (when present) with the non-None `overrides` on top."""
  values: dict[str, Any] = {}
  if config is not None and 'predict' in config:
    values.update(config.predict.to_dict())
  values.update({k: v for k, v in overrides.items() if v is not None})
  return PredictOptions(**dataclass_kwargs(PredictOptions, values, 'predict options'))


# ----------------------------------------------------------------------------- the trained model


def load_run_config(workdir: str, config: ml_collections.ConfigDict | None = None
                    ) -> ml_collections.ConfigDict:
  """The trained run's config from `<workdir>/config.json`.

  When `config` (the command line's) has a different model section, the differences are printed:
  the work directory's values are the ones used.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise train.TrainingError(f'{path} not found: {workdir!r} is not a trained work directory '
                              '(train first with --mode=train)')
  try:
    with open(path) as f:
      run_config = ml_collections.ConfigDict(json.load(f))
  except json.JSONDecodeError as error:
    raise train.TrainingError(f'{path} is not valid JSON: {error}') from None
  if config is not None:
    trained, given = run_config.model.to_dict(), json.loads(json.dumps(
        config.model.to_dict(), default=str))
    diffs = [f'{k}={trained.get(k)!r} (trained) vs {given.get(k)!r} (--config)'
             for k in sorted(set(trained) | set(given)) if trained.get(k) != given.get(k)]
    if diffs:
      print(f'note: using the trained model config from {path}; the --config model section '
            f'differs and is ignored: {"; ".join(diffs)}', flush=True)
  return run_config


def class_names_for(config: ml_collections.ConfigDict) -> list[str]:
  """The dataset's class names, or 'class_<i>' when the dataset has none of the right count."""
  try:
    names = datasets.class_names(config.data.name)
  except KeyError:
    names = []
  if len(names) != config.model.num_classes:
    names = [f'class_{i}' for i in range(config.model.num_classes)]
  return names


def restore_state(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh,
                  use_best: bool = True) -> tuple[nnx.GraphDef, train.TrainState, int]:
  """(graphdef, state, step) of the best (else the latest) checkpoint of `workdir`."""
  return train.restore_workdir(config, workdir, mesh, use_best)


def window_forward(graphdef: nnx.GraphDef, layout: Layout, aug: augment.AugmentConfig
                   ) -> Callable[[Any, Any, dict[str, jax.Array]], dict[str, jax.Array]]:
  """The deterministic forward pass on raw windows, with frames without a person masked.

  Returns fn(params, rest, batch) with batch as `augment.eval_inputs` takes it (keypoints
  (B, L, V, C), confidence (B, L, V), num_frames (B,)) -> logits (B, N), probabilities (B, N),
  routing_weights (B, K, 2) and person_frames (B,), the sampled frames the model saw a person in
  (0: no prediction). Pure and jit-able; `export` serialises it.
  """
  def forward(params, rest, batch):
    inputs = augment.eval_inputs(batch, layout, aug)
    # The frames eval_inputs sampled (same rule, same indices): mask those with nobody in them.
    indices, _ = augment.frame_indices(batch['num_frames'], batch['keypoints'].shape[1],
                                       aug.num_frames, pad=aug.pad_instead_of_resample)
    person = jnp.any(jnp.asarray(batch['confidence']) > 0, axis=-1).astype(jnp.float32)
    frame_mask = inputs['frame_mask'] * jnp.take_along_axis(person, indices, axis=1)
    logits, aux = nnx.merge(graphdef, params, rest)(inputs['keypoints'], frame_mask)
    return {'logits': logits, 'probabilities': jax.nn.softmax(logits, axis=-1),
            'routing_weights': aux['routing_weights'], 'person_frames': frame_mask.sum(-1)}
  return forward


class Predictor:
  """A trained model ready to run on raw windows of pose data.

  Attributes:
    config: the trained run's config.
    layout: the model's joint layout.
    class_names, entity_names: N class names, K entity names (routing weight order).
    step: the checkpoint step restored.
    batch_size: windows per jit call (a multiple of the device count).
  """

  def __init__(self, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
               state: train.TrainState, *, step: int = 0, batch_size: int = 32,
               mesh: jax.sharding.Mesh | None = None):
    self.config, self.step = config, step
    self.layout = get_layout(config.model.layout)
    self.class_names = class_names_for(config)
    self.entity_names = list(train.model_config(config).entity_names)
    self.mesh = mesh or sharding.make_mesh()
    devices = self.mesh.devices.size
    self.batch_size = -(-batch_size // devices) * devices
    self.aug = train.augment_config(config)
    self.graphdef, self.params, self.rest = graphdef, state['params'], state['rest']
    forward = window_forward(graphdef, self.layout, self.aug)
    self._batch_sharding = sharding.batch_sharding(self.mesh)
    self._step = jax.jit(forward, out_shardings=self._batch_sharding)

  @classmethod
  def from_workdir(cls, workdir: str, config: ml_collections.ConfigDict | None = None, *,
                   batch_size: int = 32, use_best: bool = True) -> Predictor:
    """Restores the trained model of `workdir` (its own config.json; see `load_run_config`)."""
    return cls.restore(load_run_config(workdir, config), workdir, batch_size=batch_size,
                       use_best=use_best)

  @classmethod
  def restore(cls, run_config: ml_collections.ConfigDict, workdir: str, *, batch_size: int = 32,
              use_best: bool = True) -> Predictor:
    """Restores the checkpoint of `workdir` for the model of `run_config` (its config.json)."""
    mesh = sharding.make_mesh()
    graphdef, state, step = restore_state(run_config, workdir, mesh, use_best)
    return cls(run_config, graphdef, state, step=step, batch_size=batch_size, mesh=mesh)

  def run(self, keypoints: np.ndarray, confidence: np.ndarray, starts: np.ndarray, window: int,
          progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Runs the windows [s, s + window) of one recording (cut at its end).

    Args:
      keypoints: (T, V, C) float32, the model's layout.
      confidence: (T, V) float32, 0 for missing joints.
      starts: (W,) window start frames.
      window: window length (the padded length L of every jit call).
      progress: called with the number of windows done after each batch.

    Returns:
      logits (W, N), probabilities (W, N), routing_weights (W, K, 2), person_frames (W,).
    """
    outputs: dict[str, list[np.ndarray]] = {}
    done = 0
    for batch, count in _window_batches(keypoints, confidence, starts, window, self.batch_size):
      out = self._step(self.params, self.rest, jax.device_put(batch, self._batch_sharding))
      for key, value in out.items():
        outputs.setdefault(key, []).append(sharding.fetch_global(value)[:count])
      done += count
      if progress is not None:
        progress(done)
    if not outputs:
      n, k = len(self.class_names), len(self.entity_names)
      return {'logits': np.zeros((0, n), np.float32), 'probabilities': np.zeros((0, n)),
              'routing_weights': np.zeros((0, k, 2)), 'person_frames': np.zeros((0,))}
    return {key: np.concatenate(values) for key, values in outputs.items()}


def _window_batches(keypoints: np.ndarray, confidence: np.ndarray, starts: np.ndarray,
                    window: int, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Fixed-shape batches of windows; rows past the last window have num_frames 0.

  Frames with nobody in them are dropped from each window (the rest keep their order), so the
  frames the model samples from a window are frames with a person, however sparse they are.
  """
  total = len(keypoints)
  person = np.any(confidence > 0, axis=-1)
  offsets = np.arange(window)
  for first in range(0, len(starts), batch_size):
    chunk = np.asarray(starts[first:first + batch_size])
    count = len(chunk)
    rows = np.zeros(batch_size, np.int64)
    rows[:count] = chunk
    lengths = np.where(np.arange(batch_size) < count, np.minimum(total - rows, window), 0)
    index = np.minimum(rows[:, None] + offsets, total - 1)
    keep = (offsets[None, :] < lengths[:, None]) & person[index]
    index = np.take_along_axis(index, np.argsort(~keep, axis=1, kind='stable'), axis=1)
    num_frames = keep.sum(axis=1)
    inside = offsets[None, :] < num_frames[:, None]
    yield {'keypoints': np.where(inside[..., None, None], keypoints[index], 0.0).astype(np.float32),
           'confidence': np.where(inside[..., None], confidence[index], 0.0).astype(np.float32),
           'num_frames': num_frames.astype(np.int32)}, count


# ----------------------------------------------------------------------------- reading inputs


def _array_layout(num_joints: int, channels: int, model_layout: Layout, input_layout: str,
                  source: str) -> Layout:
  """The layout of a (T, V, C) array: named, the model's, or the registered one with V joints."""
  if input_layout:
    layout = get_layout(input_layout)
  elif num_joints == model_layout.num_joints:
    layout = model_layout
  else:
    candidates = [get_layout(n) for n in layout_names()
                  if get_layout(n).num_joints == num_joints
                  and get_layout(n).coord_dims == model_layout.coord_dims]
    if not candidates:
      known = {n: get_layout(n).num_joints for n in layout_names()}
      raise DataFormatError(
          f'{source}: {num_joints} joints matches no registered {model_layout.coord_dims}D '
          f'layout (joint counts: {known}); the model was trained on layout '
          f'{model_layout.name!r} ({model_layout.num_joints} joints)')
    layout = candidates[0]
  if num_joints != layout.num_joints:
    raise DataFormatError(f'{source}: {num_joints} joints, but the layout {layout.name!r} has '
                          f'{layout.num_joints}')
  if channels not in (layout.coord_dims, layout.coord_dims + 1):
    raise DataFormatError(
        f'{source}: {channels} channels per joint; layout {layout.name!r} needs '
        f'{layout.coord_dims} (coordinates) or {layout.coord_dims + 1} (coordinates + confidence)')
  return layout


def to_model_layout(clip: Clip, model_layout: Layout) -> Clip:
  """`clip` converted to the model's layout by joint name; a clear error when it cannot be.

  A conversion is printed as a note.
  """
  if clip.layout == model_layout.name:
    return clip
  index = layout_conversion(get_layout(clip.layout), model_layout, clip.source)
  return dataclasses.replace(clip, keypoints=clip.keypoints[:, index],
                             confidence=clip.confidence[:, index], layout=model_layout.name)


def layout_conversion(source: Layout, model_layout: Layout, where: str) -> np.ndarray:
  """(V,) indices into `source` giving the model's joints; prints the conversion.

  Raises DataFormatError naming both layouts when `source` cannot be converted.
  """
  problem = None
  if source.coord_dims != model_layout.coord_dims:
    problem = f'the input is {source.coord_dims}D and the model {model_layout.coord_dims}D'
  else:
    try:
      index = model_layout.map_from(source)
    except LayoutError as error:
      problem = str(error)
  if problem is not None:
    raise DataFormatError(
        f'{where}: the input joint layout is {source.name!r} ({source.num_joints} joints) but '
        f'the model was trained on layout {model_layout.name!r} ({model_layout.num_joints} '
        f'joints), and it cannot be converted: {problem}')
  if source.name != model_layout.name:
    print(f'note: {where}: converting joint layout {source.name!r} to the model\'s '
          f'{model_layout.name!r} by joint name', flush=True)
  return index


def load_recordings(input_path: str | os.PathLike[str], model_layout: Layout | str, *,
                    input_layout: str = '') -> list[Clip]:
  """Reads pose data into Clips in the model's layout (one per recording).

  Args:
    input_path: an OpenPose JSON folder (one Clip per video), a `.npy` (T, V, C) array, an iMiGUE
      raw `*_light_hand.csv` or a PYSKL pickle (one Clip per clip in it).
    model_layout: the trained model's layout.
    input_layout: the layout of a `.npy` / PYSKL input ('' = recognised by its joint count).

  Returns:
    Clips with keypoints (T, V, C) and confidence (T, V) in the model's layout; an all-zero frame
    has confidence 0 everywhere (a frame with nobody in it).
  """
  model_layout = get_layout(model_layout) if isinstance(model_layout, str) else model_layout
  path = pathlib.Path(input_path)
  if not path.exists():
    raise DataFormatError(f'{path}: input not found')
  if path.is_dir():
    # The reader picks the model's joints by name from BODY_25 + hand tips (and reads the hand
    # keypoints only when the model has finger points).
    layout_conversion(get_layout(OPENPOSE_FULL_LAYOUT), model_layout, f'{path} (OpenPose JSON)')
    return read_openpose_folder(path, layout=model_layout.name)
  elif path.suffix == '.npy':
    clips = [_read_npy(path, model_layout, input_layout)]
  elif path.suffix == '.csv':
    keypoints, confidence = read_skeleton_csv(path)
    clips = [Clip(clip_id=path.stem.removesuffix('_light_hand'), keypoints=keypoints,
                  confidence=confidence, label=-1, layout=IMIGUE_RAW_LAYOUT, source=str(path))]
  elif path.suffix in ('.pkl', '.pickle'):
    _, annotations = load_pyskl(path)
    if not annotations:
      raise DataFormatError(f'{path}: the PYSKL file holds no clips')
    clips = []
    for i, ann in enumerate(annotations):
      kp = np.asarray(ann.get('keypoint', np.zeros((0, 0, 0, 0))))
      shape = kp.shape if kp.ndim == 4 else (0, 0, 0, 0)
      layout = _array_layout(shape[2], shape[3], model_layout, input_layout,
                             f'{path} [annotation {i}]')
      clips.append(annotation_to_clip(ann, layout=layout.name, labelled=False,
                                      source=f'{path} [annotation {i}]'))
  else:
    raise DataFormatError(
        f'{path}: unknown input; expected an OpenPose JSON folder, a .npy array (T, V, C), an '
        'iMiGUE raw *_light_hand.csv or a PYSKL .pkl')
  return [to_model_layout(clip, model_layout) for clip in clips]


def _read_npy(path: pathlib.Path, model_layout: Layout, input_layout: str) -> Clip:
  try:
    array = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as error:
    raise DataFormatError(f'{path}: not a readable .npy array: {error}') from None
  if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
    raise DataFormatError(f'{path}: expected a numeric (T, V, C) array, got {array.dtype} '
                          f'{array.shape}')
  layout = _array_layout(array.shape[1], array.shape[2], model_layout, input_layout, str(path))
  array = array.astype(np.float32)
  keypoints = array[..., :layout.coord_dims]
  if array.shape[2] > layout.coord_dims:
    confidence = array[..., layout.coord_dims]
  else:
    confidence = presence_confidence(keypoints)
  keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
  return Clip(clip_id=path.stem, keypoints=keypoints, confidence=confidence, label=-1,
              layout=layout.name, source=str(path)).validate(layout.num_joints)


# ----------------------------------------------------------------------------- windows and timeline


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
  """Start frames of the windows over `num_frames` frames.

  Windows start every `stride` frames; when the last one ends before the last frame, one more
  window ends exactly there, so every frame is covered. An input of at most one window gets one
  window starting at 0.
  """
  if num_frames <= window:
    return np.zeros(1, np.int64)
  starts = np.arange(0, num_frames - window + 1, stride)
  if starts[-1] + window < num_frames:
    starts = np.append(starts, num_frames - window)
  return starts.astype(np.int64)


def majority_filter(labels: np.ndarray, width: int, num_classes: int) -> np.ndarray:
  """Per frame, the most frequent class among the labelled frames within width // 2 of it.

  Frames labelled NO_PERSON_LABEL keep it and are not counted; ties keep the frame's own class,
  then the lower class index.

  Args:
    labels: (T,) int, classes 0..num_classes-1 or NO_PERSON_LABEL.
    width: odd filter width in frames (1: no change).
    num_classes: N.
  """
  labels = np.asarray(labels)
  if width <= 1 or len(labels) == 0:
    return labels.copy()
  half = width // 2
  person = labels >= 0
  one_hot = np.zeros((len(labels), num_classes), np.float64)
  one_hot[np.flatnonzero(person), labels[person]] = 1.0
  cumulative = np.concatenate([np.zeros((1, num_classes)), np.cumsum(one_hot, axis=0)])
  t = np.arange(len(labels))
  counts = (cumulative[np.minimum(t + half + 1, len(labels))]
            - cumulative[np.maximum(t - half, 0)])
  smoothed = np.argmax(counts + 0.5 * one_hot, axis=1)
  return np.where(person, smoothed, NO_PERSON_LABEL)


def frame_timeline(num_frames: int, starts: np.ndarray, window: int, probabilities: np.ndarray,
                   predicted: np.ndarray, person: np.ndarray, smoothing: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """The per-frame micro-action timeline.

  A frame's class is the argmax of the mean probability over the predicted windows that cover
  it, then a majority filter (`majority_filter`, width `smoothing`) over the frames with a
  person. A frame with nobody in it (or, were it to happen, no predicted window covering it) is
  NO_PERSON_LABEL.

  Args:
    num_frames: T.
    starts: (W,) window start frames.
    window: window length.
    probabilities: (W, N) class probabilities (rows of windows without a prediction ignored).
    predicted: (W,) bool, the windows that got a prediction.
    person: (T,) bool, frames with a person.
    smoothing: majority-filter width (odd).

  Returns:
    raw (T,) and smoothed (T,) int labels.
  """
  num_classes = probabilities.shape[1]
  sums = np.zeros((num_frames + 1, num_classes))
  counts = np.zeros(num_frames + 1)
  ends = np.minimum(starts + window, num_frames)
  np.add.at(sums, starts[predicted], probabilities[predicted])
  np.add.at(sums, ends[predicted], -probabilities[predicted])
  np.add.at(counts, starts[predicted], 1.0)
  np.add.at(counts, ends[predicted], -1.0)
  sums, counts = np.cumsum(sums, axis=0)[:-1], np.cumsum(counts)[:-1]
  covered = (counts > 0.5) & person
  raw = np.where(covered, np.argmax(sums, axis=1), NO_PERSON_LABEL)
  return raw, majority_filter(raw, smoothing, num_classes)


def time_shares(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
  """Frames and percentages per label of a per-frame timeline.

  Returns:
    {'frames': {name: count}, 'percent_of_time': {name: %} (all frames, 'no person' included,
    sums to 100), 'percent_of_person_time': {name: %} (frames with a person)}; every class is
    listed (0 when absent), 'no person' last.
  """
  labels = np.asarray(labels)
  counts = np.bincount(labels[labels >= 0], minlength=len(class_names))
  frames = {name: int(c) for name, c in zip(class_names, counts)}
  frames[NO_PERSON] = int(np.sum(labels == NO_PERSON_LABEL))
  total, person_total = max(len(labels), 1), max(int(counts.sum()), 1)
  return {
      'frames': frames,
      'percent_of_time': {k: 100.0 * v / total for k, v in frames.items()},
      'percent_of_person_time': {k: 100.0 * v / person_total for k, v in frames.items()
                                 if k != NO_PERSON},
  }


def segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
  """Runs of equal labels: [(start, end (exclusive), label), ...]."""
  labels = np.asarray(labels)
  if len(labels) == 0:
    return []
  edges = np.flatnonzero(np.diff(labels)) + 1
  bounds = np.concatenate([[0], edges, [len(labels)]])
  return [(int(a), int(b), int(labels[a])) for a, b in zip(bounds[:-1], bounds[1:])]


# ----------------------------------------------------------------------------- one recording


def _label_name(label: int, class_names: Sequence[str]) -> str:
  return NO_PERSON if label == NO_PERSON_LABEL else class_names[label]


class _Progress:
  """A plain-text progress bar on stderr."""

  def __init__(self, total: int, what: str, enabled: bool = True, width: int = 30):
    self.total, self.what, self.enabled, self.width = total, what, enabled, width
    self.start = time.time()

  def __call__(self, done: int) -> None:
    if not self.enabled:
      return
    elapsed = time.time() - self.start
    rate = done / max(elapsed, 1e-9)
    eta = (self.total - done) / max(rate, 1e-9)
    filled = int(self.width * done / max(self.total, 1))
    sys.stderr.write(f'\r{self.what} {done}/{self.total} [{"#" * filled}'
                     f'{"." * (self.width - filled)}] {rate:.1f}/s ETA {eta:.0f} s')
    if done >= self.total:
      sys.stderr.write('\n')
    sys.stderr.flush()


def _routing_dict(weights: np.ndarray, entity_names: Sequence[str]) -> dict[str, dict[str, float]]:
  return {e: {'st': float(w[0]), 'ts': float(w[1])} for e, w in zip(entity_names, weights)}


def predict_clip(predictor: Predictor, clip: Clip, options: PredictOptions,
                 output_dir: str | os.PathLike[str], *, verbose: bool = True) -> dict[str, Any]:
  """Runs the model over one recording and writes its outputs (module docstring).

  Args:
    predictor: the trained model.
    clip: the recording in the model's layout.
    options: resolved options (`PredictOptions.resolved`).
    output_dir: where the files go (created).
    verbose: print tables and the progress bar.

  Returns:
    The summary written to prediction.json (short input) or summary.json (long input).
  """
  output_dir = os.fspath(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  total = clip.num_frames
  person = np.any(clip.confidence > 0, axis=-1)
  empty = int(np.sum(~person))
  starts = window_starts(total, options.window, options.stride)
  ends = np.minimum(starts + options.window, total)
  cumulative = np.concatenate([[0], np.cumsum(person)])
  window_person = cumulative[ends] - cumulative[starts]
  run_rows = np.flatnonzero(window_person > 0)
  progress = _Progress(len(run_rows), 'windows', enabled=verbose and len(starts) > 1)
  out = predictor.run(clip.keypoints, clip.confidence, starts[run_rows], options.window,
                      progress)
  num_classes, k = len(predictor.class_names), len(predictor.entity_names)
  probabilities = np.zeros((len(starts), num_classes))
  routing = np.full((len(starts), k, 2), np.nan)
  predicted = np.zeros(len(starts), bool)
  probabilities[run_rows] = out['probabilities']
  routing[run_rows] = out['routing_weights']
  predicted[run_rows] = out['person_frames'] > 0
  probabilities[~predicted] = 0.0
  routing[~predicted] = np.nan
  common = {
      'input': clip.source, 'recording': clip.clip_id, 'workdir_step': predictor.step,
      'layout': predictor.layout.name, 'fps': options.fps, 'num_frames': total,
      'empty_frames': empty, 'empty_percent': 100.0 * empty / total,
  }
  if total <= options.window:
    return _short_result(predictor, clip, options, output_dir, common,
                         probabilities[0] if predicted[0] else None, routing[0], verbose)

  raw, smoothed = frame_timeline(total, starts, options.window, probabilities, predicted, person,
                                 options.smoothing)
  shares = time_shares(smoothed, predictor.class_names)
  ranked = metrics_lib.topk_indices(probabilities, options.top_k)
  _write_windows_csv(os.path.join(output_dir, 'windows.csv'), starts, ends, window_person,
                     predicted, ranked, probabilities, routing, predictor, options.fps)
  _write_timeline_csv(os.path.join(output_dir, 'timeline.csv'), smoothed, predictor.class_names,
                      options.fps)
  top1 = ranked[:, 0]
  by_action = {}
  for c in np.unique(top1[predicted]):
    mean = routing[predicted & (top1 == c)].mean(axis=0)
    by_action[predictor.class_names[c]] = {e: float(w[0]) for e, w in
                                           zip(predictor.entity_names, mean)}
  background = (options.background_class
                if options.background_class in predictor.class_names else None)
  summary = {
      **common, 'window': options.window, 'stride': options.stride,
      'smoothing': options.smoothing, 'batch_size': predictor.batch_size,
      'windows': {'total': len(starts), 'predicted': int(predicted.sum()),
                  'no_person': int((~predicted).sum())},
      **shares,
      'background_class': background,
      'background_percent': shares['percent_of_time'][background] if background else None,
      'frames_changed_by_smoothing': int(np.sum(raw != smoothed)),
      'mean_routing_weights': (_routing_dict(np.nanmean(routing[predicted], axis=0),
                                             predictor.entity_names)
                               if predicted.any() else None),
      'st_share_by_predicted_action': by_action,
  }
  with open(os.path.join(output_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot_timeline(os.path.join(output_dir, 'timeline.png'), smoothed, starts, ends, probabilities,
                predicted, routing, predictor.class_names, predictor.entity_names, options.fps,
                title=clip.clip_id)
  if verbose:
    print(_shares_table(shares, total, options.fps), flush=True)
    print(f'outputs: {output_dir}', flush=True)
  return summary


def _short_result(predictor: Predictor, clip: Clip, options: PredictOptions, output_dir: str,
                  common: dict[str, Any], probabilities: np.ndarray | None,
                  routing: np.ndarray, verbose: bool) -> dict[str, Any]:
  """Clip-level result of an input of at most one window."""
  result: dict[str, Any] = {**common, 'window': options.window}
  if probabilities is None:
    result.update(status=NO_PERSON, top_k=[], routing_weights=None)
  else:
    ranked = metrics_lib.topk_indices(probabilities[None], options.top_k)[0]
    result.update(status='ok', top_k=[{'class': predictor.class_names[c],
                                       'index': int(c),
                                       'probability': float(probabilities[c])} for c in ranked],
                  routing_weights=_routing_dict(routing, predictor.entity_names))
  with open(os.path.join(output_dir, 'prediction.json'), 'w') as f:
    json.dump(result, f, indent=2)
  if verbose:
    print(_clip_table(result), flush=True)
  if options.render and probabilities is not None:
    result['animation'] = render_clip(
        clip.keypoints, clip.confidence, predictor.layout, os.path.join(output_dir, 'clip.gif'),
        routing_weights=routing, entity_names=predictor.entity_names, fps=options.fps,
        title=f'{clip.clip_id}: {result["top_k"][0]["class"]}')
  return result


def _write_windows_csv(path: str, starts, ends, window_person, predicted, ranked, probabilities,
                       routing, predictor: Predictor, fps: float) -> None:
  header = ['window', 'start_frame', 'end_frame', 'start_s', 'end_s', 'person_frames', 'status']
  for i in range(ranked.shape[1]):
    header += [f'top{i + 1}', f'top{i + 1}_prob']
  for e in predictor.entity_names:
    header += [f'{e}_st', f'{e}_ts']
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for w in range(len(starts)):
      row = [w, int(starts[w]), int(ends[w]) - 1, f'{starts[w] / fps:.3f}', f'{ends[w] / fps:.3f}',
             int(window_person[w]), 'ok' if predicted[w] else NO_PERSON]
      for c in ranked[w]:
        row += ([predictor.class_names[c], f'{probabilities[w, c]:.6f}'] if predicted[w]
                else ['', ''])
      for a_st, a_ts in routing[w]:
        row += [f'{a_st:.6f}', f'{a_ts:.6f}'] if predicted[w] else ['', '']
      writer.writerow(row)


def _write_timeline_csv(path: str, labels: np.ndarray, class_names: Sequence[str],
                        fps: float) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['start_frame', 'end_frame', 'start_s', 'end_s', 'label'])
    for start, end, label in segments(labels):
      writer.writerow([start, end - 1, f'{start / fps:.3f}', f'{end / fps:.3f}',
                       _label_name(label, class_names)])


def _shares_table(shares: dict[str, Any], total: int, fps: float) -> str:
  lines = [f'Predicted time per micro-action ({total} frames, {total / fps:.1f} s at {fps:g} fps):',
           f'  {"action":<28} {"frames":>8} {"seconds":>9} {"% of time":>10}']
  order = sorted(shares['frames'], key=lambda n: (n == NO_PERSON, -shares['frames'][n]))
  for name in order:
    frames = shares['frames'][name]
    if frames or name == NO_PERSON:
      lines.append(f'  {name:<28} {frames:>8d} {frames / fps:>9.1f} '
                   f'{shares["percent_of_time"][name]:>10.2f}')
  return '\n'.join(lines)


def _clip_table(result: dict[str, Any]) -> str:
  lines = [f'Clip-level prediction for {result["recording"]} ({result["num_frames"]} frames, '
           f'{result["empty_frames"]} without a person):']
  if result['status'] == NO_PERSON:
    return '\n'.join(lines + ['  no person detected: no prediction'])
  lines.append(f'  {"rank":<5} {"class":<28} {"probability":>11}')
  for i, entry in enumerate(result['top_k']):
    lines.append(f'  {i + 1:<5} {entry["class"]:<28} {entry["probability"]:>11.4f}')
  lines.append('Routing weights per body part (ST: spatial first, TS: temporal first):')
  lines.append(f'  {"entity":<14} {"ST":>6} {"TS":>6}')
  for entity, w in result['routing_weights'].items():
    lines.append(f'  {entity:<14} {w["st"]:>6.3f} {w["ts"]:>6.3f}')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------- figures


def _class_colors(num_classes: int) -> np.ndarray:
  cmap = colormaps['tab20' if num_classes <= 20 else 'turbo']
  return cmap(np.linspace(0, 1, num_classes) if num_classes > 20 else np.arange(num_classes))


def plot_timeline(out_png: str | os.PathLike[str], labels: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                  routing: np.ndarray, class_names: Sequence[str], entity_names: Sequence[str],
                  fps: float, title: str = '') -> str:
  """Timeline PNG: the smoothed per-frame actions ('no person' grey), each window's top-1
  probability, and each entity's ST routing share over time.

  Args:
    labels: (T,) smoothed frame labels (NO_PERSON_LABEL for no person).
    starts, ends: (W,) window frames [start, end).
    probabilities: (W, N); predicted: (W,) bool; routing: (W, K, 2).
  """
  colors = _class_colors(len(class_names))
  seconds = len(labels) / fps
  fig = report._new_figure(12.0, 7.0)  # pylint: disable=protected-access
  ax_band, ax_prob, ax_route = fig.subplots(3, 1, sharex=True, height_ratios=(1.0, 1.6, 1.6))
  grey = np.array([[0.82, 0.82, 0.82, 1.0]])
  band = np.where(labels < 0, 0, labels + 1)[None]
  ax_band.imshow(band, aspect='auto', interpolation='nearest', extent=(0, seconds, 0, 1),
                 cmap=ListedColormap(np.concatenate([grey, colors])), vmin=0,
                 vmax=len(class_names))
  ax_band.set_yticks([])
  present = sorted(set(int(x) for x in np.unique(labels)))
  handles = [Patch(color=grey[0] if c < 0 else colors[c], label=_label_name(c, class_names))
             for c in present]
  ax_band.legend(handles=handles, fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0),
                 ncol=1 + len(handles) // 12)
  ax_band.set_title(f'{title + ": " if title else ""}smoothed micro-action timeline')
  centres = (starts + ends) / 2.0 / fps
  top1 = np.argmax(probabilities, axis=1)
  for c in np.unique(top1[predicted]):
    rows = predicted & (top1 == c)
    ax_prob.scatter(centres[rows], probabilities[rows, c], s=10, color=colors[c])
  ax_prob.set_ylim(0.0, 1.05)
  ax_prob.set_ylabel('window top-1 prob.')
  ax_prob.grid(alpha=0.3)
  for k, entity in enumerate(entity_names):
    ax_route.plot(centres, routing[:, k, 0], linewidth=1.0, label=entity)
  ax_route.axhline(0.5, color='black', linewidth=0.8, linestyle='--')
  ax_route.set_ylim(0.0, 1.0)
  ax_route.set_ylabel('ST share (1 = spatial first)')
  ax_route.set_xlabel('time (s)')
  ax_route.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0))
  ax_route.grid(alpha=0.3)
  return report._save(fig, out_png)  # pylint: disable=protected-access


def _joint_entities(layout: Layout, entity_names: Sequence[str]) -> np.ndarray:
  """(V,) the entity index drawn for each joint (-1: none); hands win over the head and torso."""
  owner = np.full(layout.num_joints, -1)
  by_size = sorted(range(len(entity_names)), key=lambda k: -len(layout.entities[entity_names[k]]))
  for k in by_size:   # smaller (more specific) entities are written last and win
    owner[list(layout.entities[entity_names[k]])] = k
  return owner


def render_clip(keypoints: np.ndarray, confidence: np.ndarray, layout: Layout | str,
                out_path: str | os.PathLike[str], *, routing_weights: np.ndarray | None = None,
                entity_names: Sequence[str] | None = None, fps: float = 30.0,
                title: str = '', max_frames: int = 90) -> str:
  """Animates a clip as a GIF: bones coloured by entity, the entities' routing weights beside it.

  Written with matplotlib's PillowWriter (Pillow is a dependency of matplotlib, which needs it to
  write PNGs too). 3D clips are drawn as their x-y projection.

  Args:
    keypoints: (T, V, C) coordinates (image y down for 2D data).
    confidence: (T, V); joints with 0 are not drawn.
    layout: the clip's joint layout.
    out_path: output file (.gif).
    routing_weights: optional (K, 2) [a_st, a_ts] per entity, shown as bars.
    entity_names: K entities (default: the layout's).
    fps: frame rate of the clip; the GIF plays at real speed after subsampling.
    title: figure title.
    max_frames: at most this many frames are drawn (uniformly subsampled).

  Returns:
    The path written.
  """
  layout = get_layout(layout) if isinstance(layout, str) else layout
  entity_names = list(entity_names or layout.entity_names)
  keypoints, confidence = np.asarray(keypoints), np.asarray(confidence)
  if keypoints.ndim != 3 or keypoints.shape[1] != layout.num_joints:
    raise ValueError(f'keypoints must be (T, {layout.num_joints}, C) for layout '
                     f'{layout.name!r}, got {keypoints.shape}')
  visible = confidence > 0
  if not visible.any():
    raise ValueError('nothing to render: no joint is visible in any frame')
  frames = np.unique(np.linspace(0, len(keypoints) - 1, min(max_frames, len(keypoints)))
                     .round().astype(int))
  colors = _class_colors(len(entity_names))
  owner = _joint_entities(layout, entity_names)
  xy = keypoints[..., :2]
  low, high = xy[visible].min(0), xy[visible].max(0)
  pad = 0.08 * max(float((high - low).max()), 1e-6)

  width = 8.0 if routing_weights is not None else 5.0
  fig = report._new_figure(width, 5.0)  # pylint: disable=protected-access
  if routing_weights is not None:
    ax, ax_bar = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    st = np.asarray(routing_weights)[:, 0]
    ax_bar.barh(np.arange(len(entity_names)), st, color=colors[:len(entity_names)])
    ax_bar.axvline(0.5, color='black', linewidth=0.8, linestyle='--')
    ax_bar.set_yticks(np.arange(len(entity_names)), labels=entity_names, fontsize=8)
    ax_bar.set_xlim(0.0, 1.0)
    ax_bar.set_xlabel('ST share (TS = 1 - ST)')
    ax_bar.set_title('routing per body part', fontsize=9)
  else:
    ax = fig.add_subplot()
  ax.set_xlim(low[0] - pad, high[0] + pad)
  ax.set_ylim(high[1] + pad, low[1] - pad)   # image coordinates: y down
  ax.set_aspect('equal')
  ax.set_xticks([])
  ax.set_yticks([])
  bones = [(j, p) for j, p in layout.bones]
  lines = [ax.plot([], [], linewidth=2.0, color=colors[owner[j]] if owner[j] >= 0 else 'grey')[0]
           for j, _ in bones]
  dots = ax.scatter(np.zeros(layout.num_joints), np.zeros(layout.num_joints), s=10,
                    c=[colors[o] if o >= 0 else (0.5, 0.5, 0.5, 1.0) for o in owner])
  label = ax.set_title(title, fontsize=9)

  def draw(t: int) -> None:
    for line, (j, p) in zip(lines, bones):
      if visible[t, j] and visible[t, p]:
        line.set_data(xy[t, [j, p], 0], xy[t, [j, p], 1])
      else:
        line.set_data([], [])
    dots.set_offsets(np.where(visible[t][:, None], xy[t], np.nan))
    label.set_text(f'{title}  frame {t}' if title else f'frame {t}')

  out_path = os.fspath(out_path)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)) or '.', exist_ok=True)
  step = len(keypoints) / len(frames)
  writer = PillowWriter(fps=max(1, round(fps / step)))
  with writer.saving(fig, out_path, dpi=80):
    for t in frames:
      draw(int(t))
      writer.grab_frame()
  return out_path


# ----------------------------------------------------------------------------- --mode=predict


def run_predict(config: ml_collections.ConfigDict, workdir: str, input_path: str | None,
                output_dir: str | None = None, *, window: int | None = None,
                stride: int | None = None, batch_size: int | None = None,
                top_k: int | None = None, smoothing: int | None = None, fps: float | None = None,
                input_layout: str | None = None, background_class: str | None = None,
                render: bool | None = None, verbose: bool = True) -> list[dict[str, Any]]:
  """`--mode=predict`: the trained model of `workdir` on the pose data at `input_path`.

  Args:
    config: the command-line config (only its `predict` section, if any, is used).
    workdir: the trained run (its config.json defines the model).
    input_path: see `load_recordings`.
    output_dir: output folder (default `<workdir>/predict/<input name>`); with several
      recordings in the input, one sub-folder per recording.
    window, ...: `PredictOptions`; None takes config.predict's value or the default.
    verbose: print tables and progress.

  Returns:
    One summary per recording (see `predict_clip`).
  """
  if not input_path:
    raise ValueError('--input is required for --mode=predict (an OpenPose JSON folder, a .npy '
                     '(T, V, C) array, an iMiGUE *_light_hand.csv or a PYSKL .pkl)')
  options = predict_options(
      config, window=window, stride=stride, batch_size=batch_size, top_k=top_k,
      smoothing=smoothing, fps=fps, input_layout=input_layout,
      background_class=background_class, render=render)
  run_config = load_run_config(workdir, config)
  options = options.resolved(run_config)
  # Input errors (layout, format) come before the slower checkpoint restore.
  clips = load_recordings(input_path, run_config.model.layout, input_layout=options.input_layout)
  predictor = Predictor.restore(run_config, workdir, batch_size=options.batch_size)
  name = pathlib.Path(input_path).name.split('.')[0] or 'input'
  output_dir = output_dir or os.path.join(workdir, 'predict', name)
  if verbose:
    print(f'Predicting with {workdir} (checkpoint step {predictor.step}, layout '
          f'{predictor.layout.name}, {len(predictor.class_names)} classes): window '
          f'{options.window}, stride {options.stride}, batch {predictor.batch_size}', flush=True)
  results = []
  for clip in clips:
    where = output_dir if len(clips) == 1 else os.path.join(output_dir, clip.clip_id)
    results.append(predict_clip(predictor, clip, options, where, verbose=verbose))
  return results

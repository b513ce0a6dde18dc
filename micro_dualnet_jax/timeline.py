"""From window predictions to a per-frame timeline of a long recording (numpy, no model).

A recording of T frames is cut into windows of `window` frames every `stride` frames
(`window_starts`); each predicted window votes for every frame it covers with its class
probabilities; a frame's class is the argmax of the mean vote, then a majority filter smooths the
frames with a person (`frame_timeline`). Frames with nobody in them are 'no person'
(NO_PERSON_LABEL). `time_shares` gives the percent of time per action, `segments` the runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_PERSON = 'no person'
NO_PERSON_LABEL = -1


def label_name(label: int, class_names: Sequence[str]) -> str:
  """The class name of a timeline label ('no person' for NO_PERSON_LABEL)."""
  return NO_PERSON if label == NO_PERSON_LABEL else class_names[label]


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



"""Host-side loader: shuffle, shard by process, pad to fixed shapes, prefetch.

The source is any random-access sequence of records (a `tfds.data_source`, or a list of dicts)
with keys keypoints (T, V, C) float32, confidence (T, V), label, num_frames (clip_id optional).
Every batch has fixed shapes so jit compiles once:
  keypoints (b, L, V, C), confidence (b, L, V), num_frames (b,), label (b,), weight (b,)
with b the per-process batch and L = max_frames. Clips longer than L are uniformly subsampled to
L frames on the host (never cut); the device then samples T <= L frames from the valid part.

Training order: epoch e visits a permutation seeded by (seed, e); global batch i of an epoch takes
positions [i * B, (i + 1) * B) of it and process p keeps its b = B / P rows, so the position in
the data is a function of the step alone (a resumed run reads exactly what it would have read).
Evaluation: one pass in source order; the last partial batch is padded with weight-0 rows, so
every clip is seen exactly once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax.data.clip import Clip
from micro_dualnet_jax.errors import ConfigError, DataFormatError


class Loader:
  """Batches a random-access source for one process of a data-parallel job.

  Args:
    source: random-access records (see module docstring).
    global_batch_size: B, summed over processes.
    max_frames: L, the padded clip length handed to the device.
    num_joints, coord_dims: expected V and C (checked on every record).
    seed: shuffle seed (training order).
    process_index, process_count: this process and the number of processes.
    num_classes: when given, labels are checked against it.
    unlabelled: whether label -1 (an unlabelled clip, e.g. a withheld test set) is accepted
      (evaluation); training needs labels.
    name: used in error messages (e.g. 'nwucla/train').
  """

  def __init__(self, source: Sequence[Mapping[str, Any]], *, global_batch_size: int,
               max_frames: int, num_joints: int, coord_dims: int, seed: int = 0,
               process_index: int = 0, process_count: int = 1, num_classes: int | None = None,
               unlabelled: bool = False, name: str = 'data'):
    if global_batch_size % process_count:
      raise ConfigError(f'batch_size {global_batch_size} is not divisible by the '
                       f'{process_count} processes')
    if len(source) == 0:
      raise DataFormatError(f'{name}: the split is empty')
    self.source, self.name = source, name
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.max_frames, self.num_joints, self.coord_dims = max_frames, num_joints, coord_dims
    self.seed, self.num_classes, self.unlabelled = seed, num_classes, unlabelled
    self.process_index, self.process_count = process_index, process_count

  def __len__(self) -> int:
    return len(self.source)

  @property
  def steps_per_epoch(self) -> int:
    """Full training batches per epoch (the remainder joins the next epoch's shuffle)."""
    return max(1, len(self.source) // self.global_batch_size)

  @property
  def eval_steps(self) -> int:
    return -(-len(self.source) // self.global_batch_size)

  def _read(self, index: int) -> dict[str, np.ndarray]:
    record = self.source[int(index)]
    where = f'{self.name} record {index} (clip {record.get("clip_id", "?")!r})'
    keypoints = np.asarray(record['keypoints'], np.float32)
    confidence = np.asarray(record['confidence'], np.float32)
    label = int(record['label'])
    if keypoints.ndim != 3 or keypoints.shape[1:] != (self.num_joints, self.coord_dims):
      raise DataFormatError(
          f'{where}: keypoints shape {keypoints.shape}; the config expects '
          f'(T, {self.num_joints}, {self.coord_dims}) (model.layout)')
    if keypoints.shape[0] == 0:
      raise DataFormatError(f'{where}: empty clip')
    if self.num_classes is not None and not 0 <= label < self.num_classes and not (
        label == -1 and self.unlabelled):
      raise DataFormatError(f'{where}: label {label} outside 0..{self.num_classes - 1} '
                            f'(model.num_classes = {self.num_classes})'
                            + ('; an unlabelled clip (-1) cannot be trained on' if label == -1
                               else ''))
    n = keypoints.shape[0]
    if n > self.max_frames:  # uniform subsampling keeps the whole clip
      take = (np.arange(self.max_frames) * n) // self.max_frames
      keypoints, confidence, n = keypoints[take], confidence[take], self.max_frames
    return {'keypoints': keypoints, 'confidence': confidence, 'num_frames': n, 'label': label}

  def batch(self, indices: np.ndarray, weights: np.ndarray | None = None
            ) -> dict[str, np.ndarray]:
    """The padded batch of the records at `indices` (weights: 1 each by default; a weight-0 row
    is a padding row, left empty)."""
    indices = np.asarray(indices)
    weights = np.ones(len(indices), np.float32) if weights is None else np.asarray(weights)
    b, length = len(indices), self.max_frames
    batch = {
        'keypoints': np.zeros((b, length, self.num_joints, self.coord_dims), np.float32),
        'confidence': np.zeros((b, length, self.num_joints), np.float32),
        'num_frames': np.zeros((b,), np.int32),
        'label': np.zeros((b,), np.int32),
        'weight': weights.astype(np.float32),
        'index': indices.astype(np.int32),
    }
    for row, (index, weight) in enumerate(zip(indices, weights)):
      if weight == 0:
        continue  # padding row: zero frames, masked out of the loss and the metrics
      clip = self._read(index)
      n = clip['num_frames']
      batch['keypoints'][row, :n] = clip['keypoints']
      batch['confidence'][row, :n] = clip['confidence']
      batch['num_frames'][row] = n
      batch['label'][row] = clip['label']
    return batch

  def train_indices(self, step: int) -> np.ndarray:
    """This process's source indices for global training step `step` (0-based)."""
    epoch, offset = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
    start = offset * self.global_batch_size + self.process_index * self.local_batch_size
    positions = np.arange(start, start + self.local_batch_size) % len(order)
    return order[positions]

  def train_batches(self, start_step: int = 0, prefetch: int = 2
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches from global step `start_step`, read ahead in a thread."""
    def produce(step):
      indices = self.train_indices(step)
      return self.batch(indices)
    return _prefetch(produce, start_step, None, prefetch)

  def eval_batches(self, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the source in order; padding rows have weight 0."""
    n, b = len(self.source), self.local_batch_size

    def produce(step):
      start = step * self.global_batch_size + self.process_index * b
      positions = np.arange(start, start + b)
      valid = positions < n
      return self.batch(np.where(valid, positions, 0), valid.astype(np.float32))
    return _prefetch(produce, 0, self.eval_steps, prefetch)


def clip_record(clip: Clip) -> dict[str, Any]:
  """A `Clip` as a loader record."""
  return {'keypoints': clip.keypoints, 'confidence': clip.confidence, 'label': clip.label,
          'num_frames': clip.num_frames, 'clip_id': clip.clip_id}


def pad_clips(clips: Sequence[Clip | Mapping[str, Any]], max_frames: int) -> dict[str, np.ndarray]:
  """Clips (or loader records) -> one batch padded to `max_frames`, as the device pipeline
  (`augment.train_inputs` / `eval_inputs`) and the train step take it: keypoints (B, L, V, C),
  confidence (B, L, V), num_frames (B,), label (B,), weight (B,), index (B,). Longer clips are
  subsampled to `max_frames`."""
  records = [c if isinstance(c, Mapping) else clip_record(c) for c in clips]
  if not records:
    raise ValueError('pad_clips needs at least one clip')
  _, v, c = np.shape(records[0]['keypoints'])
  loader = Loader(records, global_batch_size=len(records), max_frames=max_frames, num_joints=v,
                  coord_dims=c, unlabelled=True, name='pad_clips')
  return loader.batch(np.arange(len(records)))


def _prefetch(produce, start: int, stop: int | None, depth: int) -> Iterator[Any]:
  """Runs produce(start), produce(start + 1), ... in a daemon thread, `depth` items ahead.

  An exception in the thread is re-raised in the consumer at the failing item.
  """
  items: queue.Queue = queue.Queue(maxsize=max(1, depth))
  finished = object()
  stopping = threading.Event()

  def work():
    step = start
    try:
      while (stop is None or step < stop) and not stopping.is_set():
        item = produce(step)
        while not stopping.is_set():
          try:
            items.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        step += 1
      items.put(finished)
    except BaseException as error:  # handed to the consumer
      items.put(error)

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while True:
      item = items.get()
      if item is finished:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stopping.set()

"""Runs an ONNX export of Micro-DualNet with onnxruntime and numpy alone: no JAX, no package.

`--mode=export --export_format=onnx` copies this file into the export folder as `load_onnx.py`,
so a machine with only numpy and onnxruntime runs the model:

    from load_onnx import load_onnx
    model = load_onnx(FOLDER)
    result = model.predict(keypoints)            # one raw clip (T, V, C) or (T, V, C + 1)
    result['top_k'], result['routing_weights']
    out = model.run(keypoints, confidence, num_frames)   # raw windows (B, L, V, C), batched

The folder holds `model.onnx` (keypoints (B, T, V, C + 1), frame_mask (B, T) -> logits (B, N),
routing_weights (B, K, 2)), `labels.json` and `preprocessing.json`. `model_inputs` below is the
evaluation preprocessing of training (micro_dualnet_jax/data/augment.py `eval_inputs`: frame
sampling, normalisation, yaw alignment, the input stream) written in numpy from the settings in
preprocessing.json; tests/test_onnx.py checks it against the JAX pipeline. This file imports
json, os, numpy and onnxruntime only; nothing else of the package.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

ONNX_FILE = 'model.onnx'
LABELS_FILE = 'labels.json'
PREPROCESSING_FILE = 'preprocessing.json'
_MIN_SCALE = 1e-6   # a scale reference at or below this is absent (augment._MIN_SCALE)


# ----------------------------------------------------------------------------- preprocessing


def frame_indices(num_frames: np.ndarray, max_frames: int, num_out: int, pad: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(indices (B, T), frame_mask (B, T)): output frame t reads input frame
  floor((2t + 1) n / (2m)) of the n valid frames, m = T (or min(n, T) with `pad`, the rest
  padding); a row with n = 0 is all padding."""
  n = np.clip(np.asarray(num_frames, np.int64), 0, max_frames)
  m = np.maximum(np.minimum(n, num_out) if pad else np.full_like(n, num_out), 1)[:, None]
  t = np.arange(num_out, dtype=np.int64)
  indices = ((2 * t + 1) * n[:, None]) // (2 * m)
  mask = (t < m) & (n[:, None] > 0)
  return np.where(mask, indices, 0), mask.astype(np.float32)


def _normalize_clip(x: np.ndarray, visible: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
  """One clip (T, V, C): shifted by the root of its first frame with a visible root joint (else
  the mean of all visible joints), divided by the median scale-pair distance."""
  center = np.asarray(prep['center_joints'])
  a, b = prep['scale_pair']
  center_visible = visible[:, center]
  count = center_visible.sum(-1)
  root = (x[:, center] * center_visible[..., None]).sum(1) / np.maximum(count, 1)[:, None]
  if (count > 0).any():
    anchor = root[np.argmax(count > 0)]
  else:
    anchor = (x * visible[..., None]).sum((0, 1)) / max(visible.sum(), 1)
  both = visible[:, a] & visible[:, b]
  distance = np.linalg.norm(x[:, a] - x[:, b], axis=-1)[both]
  median = np.median(distance) if len(distance) else np.nan
  scale = median if np.isfinite(median) and median > _MIN_SCALE else 1.0
  return np.where(visible[..., None], (x - anchor) / scale, 0.0)


def _align_yaw_clip(x: np.ndarray, visible: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
  """One 3D clip turned about y so that its left-right axis in the first frame where it has a
  horizontal part lies along +x."""
  left, right = (np.asarray(side) for side in zip(*prep['torso_pairs']))
  pair_visible = (visible[:, left] & visible[:, right])[..., None]
  horizontal = np.sum((x[:, left] - x[:, right]) * pair_visible, axis=1)[:, [0, 2]]
  length = np.linalg.norm(horizontal, axis=-1)
  usable = length > _MIN_SCALE
  c, s = (horizontal[np.argmax(usable)] / max(length[np.argmax(usable)], _MIN_SCALE)
          if usable.any() else (1.0, 0.0))
  rotated = np.stack([c * x[..., 0] + s * x[..., 2], x[..., 1], -s * x[..., 0] + c * x[..., 2]],
                     axis=-1)
  return np.where(visible[..., None], rotated, 0.0)


def _stream(keypoints: np.ndarray, confidence: np.ndarray, frame_mask: np.ndarray,
            prep: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """Joints -> the stream the model was trained on (bone j = joint j - its parent; motion =
  the next frame minus this one); a derived value is missing where either end is."""
  stream = prep['stream']
  if stream.startswith('bone'):
    parents = np.asarray(prep['parents'])
    parents = np.where(parents < 0, np.arange(len(parents)), parents)
    parent_conf = confidence[..., parents]
    present = (confidence > 0) & (parent_conf > 0)
    keypoints = np.where(present[..., None], keypoints - keypoints[..., parents, :], 0.0)
    confidence = np.where(present, np.minimum(confidence, parent_conf), 0.0)
  if stream.endswith('motion'):
    def next_frame(x):
      return np.concatenate([x[:, 1:], np.zeros_like(x[:, :1])], axis=1)
    confidence = confidence * frame_mask[:, :, None]
    next_conf = next_frame(confidence)
    present = (confidence > 0) & (next_conf > 0)
    keypoints = np.where(present[..., None], next_frame(keypoints) - keypoints, 0.0)
    confidence = np.where(present, np.minimum(confidence, next_conf), 0.0)
  return keypoints, confidence


def model_inputs(keypoints: np.ndarray, confidence: np.ndarray, num_frames: np.ndarray,
                 prep: dict[str, Any]) -> dict[str, np.ndarray]:
  """Raw windows -> what model.onnx takes (the evaluation preprocessing of training).

  Args:
    keypoints: (B, L, V, C) in the data's units (pixels, metres); frames n.. are padding.
    confidence: (B, L, V), 0 for a missing joint.
    num_frames: (B,) the valid length n of each row.
    prep: preprocessing.json.

  Returns:
    'keypoints' (B, T, V, C + 1) float32 (the confidence last), 'frame_mask' (B, T) float32:
    1 for a real frame with somebody in it.
  """
  keypoints = np.asarray(keypoints, np.float32)
  confidence = np.asarray(confidence, np.float32)
  b, length, v, c = keypoints.shape
  if (v, c) != (prep['num_joints'], prep['coord_dims']) or confidence.shape != (b, length, v):
    raise ValueError(f'keypoints must be (B, L, {prep["num_joints"]}, {prep["coord_dims"]}) '
                     f'with confidence (B, L, {prep["num_joints"]}), got {keypoints.shape} and '
                     f'{confidence.shape}')
  indices, frame_mask = frame_indices(num_frames, length, prep['num_frames'],
                                      pad=prep['pad_instead_of_resample'])
  rows = np.arange(b)[:, None]
  conf = confidence[rows, indices] * frame_mask[:, :, None]
  x = np.where((conf > 0)[..., None], keypoints[rows, indices], 0.0)
  visible = (conf > 0) & (frame_mask[:, :, None] > 0)
  for i in range(b):
    if prep['normalize']:
      x[i] = _normalize_clip(x[i], visible[i], prep)
    if prep['align_yaw']:
      x[i] = _align_yaw_clip(x[i], visible[i], prep)
  x, conf = _stream(x, conf, frame_mask, prep)
  # Frames with nobody detected in them are masked for the model (micro_dualnet_jax/inference.py).
  person = np.any(confidence > 0, axis=-1)[rows, indices]
  return {'keypoints': np.concatenate([x, conf[..., None]], axis=-1).astype(np.float32),
          'frame_mask': (frame_mask * person).astype(np.float32)}


def softmax(logits: np.ndarray) -> np.ndarray:
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


# ----------------------------------------------------------------------------- the model


class OnnxModel:
  """model.onnx in an onnxruntime session, with its class names and preprocessing.

  Attributes:
    labels: class names by index.
    entity_names: the K body parts of the routing weights.
    preprocessing: preprocessing.json.
    session: the `onnxruntime.InferenceSession`.
  """

  def __init__(self, folder: str, providers: list[str] | None = None,
               session_options: Any = None):
    import onnxruntime  # pylint: disable=g-import-not-at-top
    path = os.path.join(folder, ONNX_FILE)
    for needed in (path, os.path.join(folder, LABELS_FILE),
                   os.path.join(folder, PREPROCESSING_FILE)):
      if not os.path.isfile(needed):
        raise FileNotFoundError(f'{needed}: not found; export the model with --mode=export '
                                '--export_format=onnx')
    with open(os.path.join(folder, LABELS_FILE)) as f:
      self.labels = json.load(f)
    with open(os.path.join(folder, PREPROCESSING_FILE)) as f:
      self.preprocessing = json.load(f)
    self.entity_names = list(self.preprocessing['entity_names'])
    self.session = onnxruntime.InferenceSession(
        path, sess_options=session_options, providers=providers or ['CPUExecutionProvider'])

  def __call__(self, keypoints: np.ndarray, frame_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Model inputs (`model_inputs`) -> {'logits' (B, N), 'routing_weights' (B, K, 2)}."""
    logits, routing = self.session.run(
        ['logits', 'routing_weights'],
        {'keypoints': np.asarray(keypoints, np.float32),
         'frame_mask': np.asarray(frame_mask, np.float32)})
    return {'logits': logits, 'routing_weights': routing}

  def run(self, keypoints: np.ndarray, confidence: np.ndarray,
          num_frames: np.ndarray) -> dict[str, np.ndarray]:
    """Raw windows (B, L, V, C), confidence (B, L, V), num_frames (B,) -> logits,
    probabilities, routing_weights and person_frames (the sampled frames with somebody in them;
    0: no prediction), as pipeline.jaxexport returns them."""
    inputs = model_inputs(keypoints, confidence, num_frames, self.preprocessing)
    out = self(inputs['keypoints'], inputs['frame_mask'])
    return {**out, 'probabilities': softmax(out['logits']),
            'person_frames': inputs['frame_mask'].sum(-1)}

  def predict(self, keypoints: np.ndarray, confidence: np.ndarray | None = None, *,
              top_k: int = 5) -> dict[str, Any]:
    """One raw clip -> {'status': 'ok' | 'no person', 'probabilities' (N,), 'top_k':
    [{'class', 'index', 'probability'}], 'routing_weights': {entity: {'st', 'ts'}}}.

    keypoints: (T, V, C) in the model's layout, or (T, V, C + 1) with the confidence last;
    confidence (T, V) (default: 1 where a joint is not all zero). A joint with a NaN or inf
    coordinate is missing; frames with nobody in them are left out before sampling.
    """
    keypoints = np.asarray(keypoints, np.float32)
    v, c = self.preprocessing['num_joints'], self.preprocessing['coord_dims']
    if keypoints.ndim != 3 or keypoints.shape[1] != v or keypoints.shape[2] not in (c, c + 1):
      raise ValueError(f'keypoints must be (T, {v}, {c}) or (T, {v}, {c + 1}) for layout '
                       f'{self.preprocessing["layout"]!r}, got {keypoints.shape}')
    if keypoints.shape[2] == c + 1:
      keypoints, confidence = keypoints[..., :c], keypoints[..., c]
    if confidence is None:
      confidence = np.any(np.nan_to_num(keypoints) != 0, axis=-1).astype(np.float32)
    confidence = np.where(np.isfinite(keypoints).all(-1),
                          np.nan_to_num(np.asarray(confidence, np.float32)), 0.0)
    keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
    person = np.any(confidence > 0, axis=-1)
    if not person.any():
      return {'status': 'no person', 'probabilities': None, 'top_k': [],
              'routing_weights': None}
    out = self.run(keypoints[person][None], confidence[person][None],
                   np.array([person.sum()]))
    probabilities = out['probabilities'][0]
    ranked = np.argsort(-probabilities.astype(np.float64), kind='stable')[:top_k]
    return {'status': 'ok', 'probabilities': probabilities,
            'top_k': [{'class': self.labels[i], 'index': int(i),
                       'probability': float(probabilities[i])} for i in ranked],
            'routing_weights': {e: {'st': float(w[0]), 'ts': float(w[1])}
                                for e, w in zip(self.entity_names, out['routing_weights'][0])}}


def load_onnx(folder: str, providers: list[str] | None = None,
              session_options: Any = None) -> OnnxModel:
  """The export folder's model.onnx, ready to run (`OnnxModel`).

  providers: onnxruntime's execution providers (default CPU). session_options: an
  `onnxruntime.SessionOptions`; on a CPU other processes also use, turning the thread pool's
  spin-waiting off (`add_session_config_entry('session.intra_op.allow_spinning', '0')`) gave
  1.3x (NW-UCLA model) and 1.4x (default model) lower batch-1 latency on this project's loaded
  2-core machine (benchmarks/results/onnx_cpu.json)."""
  return OnnxModel(folder, providers, session_options)

"""A trained run as a model to run: its parameters restored alone, its preprocessing included.

    from micro_dualnet_jax import Predictor
    predictor = Predictor.from_workdir('runs/imigue')
    result = predictor.predict(keypoints, confidence)     # one raw clip (T, V, C), any length
    result['top_k'], result['routing_weights']

`restore_model` is what evaluation, prediction and export all restore with: the model is built
abstractly (`nnx.eval_shape`) from the run's config.json, in evaluation mode and without dropout
RNG streams, and only the `params` item of the checkpoint is read; no optimizer is built.
`Predictor` wraps the restored model with the preprocessing the model was trained with (frame
sampling, normalisation, the input stream: `augment.eval_inputs`), so raw pose data in the
run's joint layout (pixels or metres, a confidence per joint) goes in, and class probabilities
and per-entity routing weights come out. `predict.py` runs it over long recordings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax import sharding
from micro_dualnet_jax.checkpoint import Checkpointer
from micro_dualnet_jax.config import AugmentConfig, RunConfig
from micro_dualnet_jax.data.clip import Clip
from micro_dualnet_jax.data.readers import presence_confidence
from micro_dualnet_jax.errors import CheckpointReadError, InputError, UserError
from micro_dualnet_jax.models import MicroDualNet
from micro_dualnet_jax.pipeline import augment
from micro_dualnet_jax.rundir import RunDir, RunDirError, config_dict, config_differences
from micro_dualnet_jax.skeleton import Layout, get_layout


class NonFiniteOutputError(UserError, ValueError):
  """The model gave NaN or inf outputs for a window with a person: no prediction is reported."""


@dataclasses.dataclass
class RestoredModel:
  """A run's model restored for inference.

  graphdef: the model in evaluation mode; params: its parameters; model_state: its other
  variables (empty: an inference model holds no RNG streams); step: the checkpoint restored;
  config: the run's config.json; which: 'best' or 'latest'; class_names: the run's classes in
  label order.
  """
  graphdef: nnx.GraphDef
  params: nnx.State
  model_state: nnx.State
  step: int
  config: RunConfig
  which: str
  class_names: list[str]

  @property
  def state(self) -> dict[str, Any]:
    """{'params', 'model_state'}: what `steps.make_eval_step`'s step takes."""
    return {'params': self.params, 'model_state': self.model_state}

  def module(self) -> MicroDualNet:
    """The NNX module itself (evaluation mode)."""
    return nnx.merge(self.graphdef, self.params, self.model_state)


def run_config(run: RunDir, config: RunConfig | None = None, *,
               verbose: bool = True) -> RunConfig:
  """The run's config.json; a command-line `config` whose model or loss differs is noted, and
  the run's values are used."""
  trained = run.config()
  if config is not None and verbose:
    diffs = config_differences(config_dict(trained), config)
    if diffs:
      print(f'note: using the trained model config from {run.file("config.json")}; the --config '
            f'model/loss sections differ and are ignored: {"; ".join(diffs)}', flush=True)
  return trained


def restore_model(workdir: str | RunDir, *, which: str = 'best',
                  mesh: jax.sharding.Mesh | None = None,
                  config: RunConfig | None = None) -> RestoredModel:
  """The parameters of `workdir`'s best (which='best', falling back to the latest when there
  is no best checkpoint) or latest checkpoint, replicated on `mesh` (default: every device).

  config: the run's config when the caller has it already (default: read config.json).
  Raises RunDirError for a missing directory, one of several seeds, or one without a
  checkpoint; nothing is created on disk.
  """
  if which not in ('best', 'latest'):
    raise InputError(f"which must be 'best' or 'latest', got {which!r}")
  run = workdir if isinstance(workdir, RunDir) else RunDir(workdir)
  run.require_single_run('eval/predict/export')
  config = run.config() if config is None else config
  mesh = mesh or sharding.make_mesh()

  def build():
    model = MicroDualNet(config.model, rngs=nnx.Rngs(params=0))
    model.eval()
    return model

  graphdef, abstract, model_state = nnx.split(nnx.eval_shape(build), nnx.Param, ...)
  replicated = sharding.replicated(mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          abstract)
  checkpointer = Checkpointer(run.path, best_metric=config.run.best_metric,
                              async_save=False, create=False)
  try:
    used = 'best' if which == 'best' and checkpointer.steps(best=True) else 'latest'
    try:
      restored = checkpointer.restore({'params': abstract}, best=used == 'best')
    except CheckpointReadError:
      if used != 'best':
        raise
      print(f'WARNING: no best checkpoint of {run.path} could be restored; using the latest',
            flush=True)
      used, restored = 'latest', checkpointer.restore({'params': abstract})
  finally:
    checkpointer.close()
  if restored is None:
    raise RunDirError(f'no checkpoint in {run.path!r}; train first with --mode=train')
  step, items, _ = restored
  names = run.class_names()
  if len(names) != config.model.num_classes:
    names = [f'class_{i}' for i in range(config.model.num_classes)]
  return RestoredModel(graphdef, items['params'], model_state, step, config, used, names)


def window_forward(graphdef: nnx.GraphDef, layout: Layout, aug: AugmentConfig
                   ) -> Callable[[Any, Any, dict[str, jax.Array]], dict[str, jax.Array]]:
  """The deterministic forward pass on raw windows, with frames without a person masked.

  Returns fn(params, model_state, batch) with batch as `augment.eval_inputs` takes it
  (keypoints (B, L, V, C), confidence (B, L, V), num_frames (B,)) -> logits (B, N),
  probabilities (B, N), routing_weights (B, K, 2) and person_frames (B,), the sampled frames the
  model saw a person in (0: no prediction). Pure and jit-able; `export` serialises it.
  """
  def forward(params, model_state, batch):
    inputs = augment.eval_inputs(batch, layout, aug)
    # The frames eval_inputs sampled (same rule, same indices): mask those with nobody in them.
    indices, _ = augment.frame_indices(batch['num_frames'], batch['keypoints'].shape[1],
                                       aug.num_frames, pad=aug.pad_instead_of_resample)
    person = jnp.any(jnp.asarray(batch['confidence']) > 0, axis=-1).astype(jnp.float32)
    frame_mask = inputs['frame_mask'] * jnp.take_along_axis(person, indices, axis=1)
    logits, aux = nnx.merge(graphdef, params, model_state)(inputs['keypoints'], frame_mask,
                                                           deterministic=True)
    return {'logits': logits, 'probabilities': jax.nn.softmax(logits, axis=-1),
            'routing_weights': aux['routing_weights'], 'person_frames': frame_mask.sum(-1)}
  return forward


def window_batches(keypoints: np.ndarray, confidence: np.ndarray, starts: np.ndarray,
                   window: int, batch_size: int
                   ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Fixed-shape batches of the windows [s, s + window) of one recording (cut at its end).

  Frames with nobody in them are dropped from each window (the rest keep their order), so the
  frames the model samples from a window are frames with a person, however sparse they are.
  Rows past the last window have num_frames 0. Yields (batch, number of real rows).
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


class Predictor:
  """A trained model ready to run on raw pose data in its joint layout.

  Attributes:
    config: the trained run's config.
    layout: the model's joint layout.
    class_names, entity_names: N class names, K entity names (routing weight order).
    step: the checkpoint step restored.
    batch_size: windows per jit call (a multiple of the device count).
    model: the `RestoredModel`.
  """

  def __init__(self, model: RestoredModel, *, batch_size: int = 32,
               mesh: jax.sharding.Mesh | None = None):
    self.model = model
    self.config, self.step = model.config, model.step
    self.layout = get_layout(self.config.model.layout)
    self.class_names = model.class_names
    self.entity_names = list(self.config.model.entity_names)
    self.mesh = mesh or sharding.make_mesh()
    devices = self.mesh.devices.size
    self.batch_size = -(-batch_size // devices) * devices
    self.aug = self.config.augment
    forward = window_forward(model.graphdef, self.layout, self.aug)
    self._batch_sharding = sharding.batch_sharding(self.mesh)
    self._step = jax.jit(forward, out_shardings=self._batch_sharding)

  @classmethod
  def from_workdir(cls, workdir: str, config: RunConfig | None = None, *,
                   batch_size: int = 32, checkpoint: str = 'best') -> Predictor:
    """Restores the trained model of `workdir` (its own config.json; a `config` given is
    compared with it and its model section ignored, see `run_config`)."""
    run = RunDir(workdir)
    trained = run_config(run, config)
    mesh = sharding.make_mesh()
    return cls(restore_model(run, which=checkpoint, mesh=mesh, config=trained),
               batch_size=batch_size, mesh=mesh)

  @property
  def graphdef(self) -> nnx.GraphDef:
    return self.model.graphdef

  @property
  def params(self) -> nnx.State:
    return self.model.params

  @property
  def model_state(self) -> nnx.State:
    return self.model.model_state

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

    Raises NonFiniteOutputError when a window with a person gets a NaN or inf logit or routing
    weight: such a window has no prediction, and reporting its argmax would be a made-up class.
    """
    outputs: dict[str, list[np.ndarray]] = {}
    done = 0

    def collect(out, count):
      nonlocal done
      for key, value in out.items():
        outputs.setdefault(key, []).append(sharding.fetch_global(value)[:count])
      done += count
      if progress is not None:
        progress(done)

    # One batch in flight: the host cuts the next windows while the device runs these.
    pending = None
    for batch, count in window_batches(keypoints, confidence, starts, window, self.batch_size):
      out = self._step(self.params, self.model_state, jax.device_put(batch, self._batch_sharding))
      if pending is not None:
        collect(*pending)
      pending = (out, count)
    if pending is not None:
      collect(*pending)
    if not outputs:
      n, k = len(self.class_names), len(self.entity_names)
      return {'logits': np.zeros((0, n), np.float32), 'probabilities': np.zeros((0, n)),
              'routing_weights': np.zeros((0, k, 2)), 'person_frames': np.zeros((0,))}
    result = {key: np.concatenate(values) for key, values in outputs.items()}
    finite = (np.isfinite(result['logits']).all(-1)
              & np.isfinite(result['routing_weights']).all((-2, -1)))
    bad = np.flatnonzero((result['person_frames'] > 0) & ~finite)
    if len(bad):
      raise NonFiniteOutputError(
          f'the model (checkpoint step {self.step}) gave NaN or inf outputs for {len(bad)} of '
          f'{len(starts)} windows (the first starts at frame {int(starts[bad[0]])}); no '
          'prediction is reported. The input passed the value checks '
          '(docs/data_formats.md), so the checkpoint\'s parameters are not finite or the input '
          'is far outside the training data')
    return result

  def predict(self, keypoints: np.ndarray, confidence: np.ndarray | None = None, *,
              top_k: int = 5) -> dict[str, Any]:
    """One raw clip -> its top-k classes and the routing weight of every entity.

    Args:
      keypoints: (T, V, C) in the model's layout and the data's units (pixels or metres), or
        (T, V, C + 1) with the confidence last.
      confidence: (T, V), 0 for a missing joint (default: joints whose coordinates are all 0
        are missing).
      top_k: classes returned.

    Returns:
      {'status': 'ok' | 'no person', 'probabilities' (N,), 'top_k': [{'class', 'index',
      'probability'}], 'routing_weights': {entity: {'st', 'ts'}}}. The whole clip is one
      window; frames with nobody in them are left out before the model samples its T frames.
    """
    keypoints = np.asarray(keypoints, np.float32)
    v, c = self.layout.num_joints, self.layout.coord_dims
    if keypoints.ndim != 3 or keypoints.shape[1] != v or keypoints.shape[2] not in (c, c + 1):
      raise InputError(f'keypoints must be (T, {v}, {c}) or (T, {v}, {c + 1}) for layout '
                       f'{self.layout.name!r}, got {keypoints.shape}')
    if len(keypoints) == 0:
      raise InputError('the clip has no frames')
    if keypoints.shape[2] == c + 1:
      keypoints, confidence = keypoints[..., :c], keypoints[..., c]
    if confidence is None:
      confidence = presence_confidence(np.nan_to_num(keypoints))
    # A joint with any non-finite coordinate is missing, like one with confidence 0.
    confidence = np.where(np.isfinite(keypoints).all(-1),
                          np.nan_to_num(np.asarray(confidence, np.float32)), 0.0)
    keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
    Clip('input', keypoints, confidence, -1, self.layout.name, source='predict()').validate(v)
    # Padded to a power of two: clips of many lengths share a few compiled programs.
    length = 1 << max(len(keypoints) - 1, 0).bit_length()
    pad = length - len(keypoints)
    out = self.run(np.pad(keypoints, ((0, pad), (0, 0), (0, 0))),
                   np.pad(confidence, ((0, pad), (0, 0))), np.zeros(1, np.int64), length)
    if out['person_frames'][0] == 0:
      return {'status': 'no person', 'probabilities': None, 'top_k': [],
              'routing_weights': None}
    probabilities = out['probabilities'][0]
    return {'status': 'ok', 'probabilities': probabilities,
            'top_k': topk_entries(probabilities, self.class_names, top_k),
            'routing_weights': routing_entries(out['routing_weights'][0], self.entity_names)}


def topk_entries(probabilities: np.ndarray, class_names: list[str],
                 k: int) -> list[dict[str, Any]]:
  """[{'class', 'index', 'probability'}] of the k most probable classes, best first."""
  ranked = metrics_lib.topk_indices(np.asarray(probabilities)[None], k)[0]
  return [{'class': class_names[i], 'index': int(i), 'probability': float(probabilities[i])}
          for i in ranked]


def routing_entries(weights: np.ndarray, entity_names: list[str]) -> dict[str, dict[str, float]]:
  """{entity: {'st': a_st, 'ts': a_ts}} from (K, 2) routing weights."""
  return {e: {'st': float(w[0]), 'ts': float(w[1])} for e, w in zip(entity_names, weights)}

"""Export a trained model as ONNX (`--mode=export --export_format=onnx`), with jax2onnx.

    python main.py --mode=export --workdir=<trained run> --export_format=onnx [--output=<folder>]
                                                             # default <workdir>/export_onnx

Needs the optional extra (`pip install -r requirements-onnx.txt` or `pip install .[onnx]`:
jax2onnx, onnx, onnxruntime). The model is the one `--mode=export` restores (the best, else the
latest checkpoint, `export.restore_for_export`). The output folder holds:

  model.onnx          the evaluation forward pass with the weights inside: keypoints
                      (B, T, V, C + 1) and frame_mask (B, T) -> logits (B, N) and routing_weights
                      (B, K, 2), B symbolic (any batch size); the same inputs as model.jaxexport.
  labels.json         the class names, by class index.
  preprocessing.json  the jax.export artifacts' settings (`export.preprocessing_settings`).
  load_onnx.py        micro_dualnet_jax/onnx_loader.py: runs model.onnx on raw pose data with
                      numpy and onnxruntime alone (the preprocessing written in numpy).
  manifest.json       checkpoint step, opset, versions, the files, and the largest difference
                      between onnxruntime's and JAX's logits on 8 random clips, measured here.

A run trained with model.dtype bfloat16 is exported computing in float32 (onnxruntime's CPU
kernels have no bfloat16 einsum), with its parameters, which are float32 in either case; the
manifest then also gives the difference from the run's own bfloat16 forward pass.

The preprocessing stays outside the ONNX graph (jax2onnx 0.12 cannot lower its vmapped
normalisation under this jax); load_onnx.py applies it, and tests/test_onnx.py checks it
against the JAX pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from importlib import metadata
from typing import Any

import jax
import numpy as np

from micro_dualnet_jax import dirlock, export, onnx_loader
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.errors import InputError

DEFAULT_FOLDER = 'export_onnx'
LOADER_FILE = 'load_onnx.py'
MANIFEST_FILE = 'manifest.json'
OPSET = 23
INPUT_NAMES = ('keypoints', 'frame_mask')
OUTPUT_NAMES = ('logits', 'routing_weights')
_CHECK_CLIPS = 8


def _jax2onnx():
  """jax2onnx's `to_onnx`, or a one-line error saying how to install the extra."""
  try:
    # Its plugin registry logs a traceback for every plugin this jax cannot load (dm_pix ones,
    # unused here), and onnx_ir a warning per untyped shape constant: neither concerns a user.
    for name in ('jax2onnx', 'onnx_ir'):
      logging.getLogger(name).setLevel(logging.ERROR)
    from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
    import onnxruntime  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    raise InputError(f'ONNX export needs the optional onnx extra ({error}): pip install -r '
                     'requirements-onnx.txt (or pip install .[onnx])') from None
  return to_onnx


def to_onnx_model(graphdef: Any, params: Any, model_state: Any, *, num_frames: int,
                  num_joints: int, coord_dims: int) -> bytes:
  """The serialized ONNX model of the evaluation forward pass, weights included.

  Args:
    graphdef, params, model_state: the NNX model in evaluation mode (`nnx.split`).
    num_frames, num_joints, coord_dims: T, V and C of its input (B stays symbolic).
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  to_onnx = _jax2onnx()

  def forward(keypoints, frame_mask):
    logits, aux = nnx.merge(graphdef, params, model_state)(keypoints, frame_mask,
                                                           deterministic=True)
    return logits, aux['routing_weights']

  proto = to_onnx(forward, inputs=[('B', num_frames, num_joints, coord_dims + 1),
                                   ('B', num_frames)],
                  model_name='micro_dualnet', opset=OPSET, input_names=list(INPUT_NAMES),
                  output_names=list(OUTPUT_NAMES))
  return proto.SerializeToString()


def _max_logit_difference(folder: str, forward: Any, num_frames: int, num_joints: int,
                          coord_dims: int) -> float:
  """max |logits| difference between onnxruntime (the written file) and JAX on random inputs."""
  rng = np.random.default_rng(0)
  keypoints = rng.normal(size=(_CHECK_CLIPS, num_frames, num_joints, coord_dims + 1))
  keypoints[..., -1] = rng.random(keypoints.shape[:-1]) > 0.1
  frame_mask = (np.arange(num_frames) < rng.integers(1, num_frames + 1, (_CHECK_CLIPS, 1)))
  keypoints, frame_mask = keypoints.astype(np.float32), frame_mask.astype(np.float32)
  onnx_logits = onnx_loader.load_onnx(folder)(keypoints, frame_mask)['logits']
  jax_logits = np.asarray(forward(keypoints, frame_mask))
  return float(np.abs(onnx_logits - jax_logits).max())


def export_model(model: Any, config: RunConfig, output_dir: str, *,
                 workdir: str | None = None) -> dict[str, Any]:
  """Writes `model` (an `inference.RestoredModel`) with `config` (its run's) as ONNX into
  `output_dir` (module docstring); returns the manifest."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.skeleton import get_layout  # pylint: disable=g-import-not-at-top
  layout = get_layout(config.model.layout)
  sizes = {'num_frames': config.augment.num_frames,
           'num_joints': layout.num_joints, 'coord_dims': layout.coord_dims}
  graphdef = model.graphdef
  if config.model.dtype != 'float32':
    # onnxruntime's CPU kernels have no bfloat16 einsum: the graph computes in float32 with the
    # run's parameters (float32 whatever the compute dtype); the manifest says how far that is
    # from the run's own forward pass.
    graphdef = float32_graphdef(config)
  onnx_bytes = to_onnx_model(graphdef, model.params, model.model_state, **sizes)
  with dirlock.output_folder(output_dir, 'exporting'):
    with open(os.path.join(output_dir, onnx_loader.ONNX_FILE), 'wb') as f:
      f.write(onnx_bytes)
    with open(os.path.join(output_dir, onnx_loader.LABELS_FILE), 'w') as f:
      json.dump(model.class_names, f, indent=2)
    with open(os.path.join(output_dir, onnx_loader.PREPROCESSING_FILE), 'w') as f:
      json.dump(export.preprocessing_settings(config), f, indent=2)
    shutil.copyfile(onnx_loader.__file__, os.path.join(output_dir, LOADER_FILE))

    def forward_with(graph):
      @jax.jit
      def forward(keypoints, frame_mask):
        logits, _ = nnx.merge(graph, model.params, model.model_state)(
            keypoints, frame_mask, deterministic=True)
        return logits
      return forward

    manifest = {
        'workdir': os.path.abspath(workdir) if workdir else None,
        'checkpoint_step': getattr(model, 'step', None), 'format': 'onnx', 'opset': OPSET,
        'layout': layout.name, 'num_classes': int(config.model.num_classes),
        'platforms': ['onnxruntime'], 'inputs': list(INPUT_NAMES), 'outputs': list(OUTPUT_NAMES),
        'compute_dtype': 'float32', 'run_compute_dtype': config.model.dtype,
        'jax_version': jax.__version__, 'jax2onnx_version': metadata.version('jax2onnx'),
        'onnxruntime_version': metadata.version('onnxruntime'),
        'max_abs_logit_difference_vs_jax': _max_logit_difference(
            output_dir, forward_with(graphdef), **sizes),
    }
    if graphdef is not model.graphdef:
      manifest['max_abs_logit_difference_vs_jax_run_dtype'] = _max_logit_difference(
          output_dir, forward_with(model.graphdef), **sizes)
    manifest['files'] = sorted(set(os.listdir(output_dir)) - {dirlock.LOCK_FILE}) + [MANIFEST_FILE]
    with open(os.path.join(output_dir, MANIFEST_FILE), 'w') as f:
      json.dump(manifest, f, indent=2)
  return manifest


def float32_graphdef(config: RunConfig) -> Any:
  """The graph of `config`'s model computing in float32 (the parameters are float32 anyway)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.models import MicroDualNet  # pylint: disable=g-import-not-at-top
  model_config = dataclasses.replace(config.model, dtype='float32')

  def build():
    model = MicroDualNet(model_config, rngs=nnx.Rngs(params=0))
    model.eval()
    return model

  graphdef, _, _ = nnx.split(nnx.eval_shape(build), nnx.Param, ...)
  return graphdef


def export_workdir(config: RunConfig | None, workdir: str, output_dir: str | None = None, *,
                   use_best: bool = True) -> dict[str, Any]:
  """Exports the trained model of `workdir` as ONNX into `output_dir` (default
  <workdir>/export_onnx); returns the manifest."""
  _jax2onnx()   # the missing extra is reported before the checkpoint is read
  run_config, model, _ = export.restore_for_export(config, workdir, use_best=use_best)
  return export_model(model, run_config, output_dir or os.path.join(workdir, DEFAULT_FOLDER),
                      workdir=workdir)


def run_export(config: RunConfig | None, workdir: str, output_dir: str | None = None
               ) -> dict[str, Any]:
  """`--mode=export --export_format=onnx`: exports `workdir`'s model into `output_dir` (default
  <workdir>/export_onnx) and prints where the files went."""
  folder = output_dir or os.path.join(workdir, DEFAULT_FOLDER)
  manifest = export_workdir(config, workdir, folder)
  export.print_manifest(manifest, workdir, folder, 'onnx')
  return manifest

"""Export a trained model as serialized `jax.export` artifacts (`--mode=export`).

    python main.py --mode=export --config=configs/synthetic.py --workdir=<trained run> \
        [--output=<folder>]        # default <workdir>/export

The model is rebuilt from `<workdir>/config.json` and the parameters of its best (else latest)
checkpoint (`inference.restore_model`). The output folder holds:

  model.jaxexport     the evaluation forward pass: keypoints (B, T, V, C + 1) and frame_mask
                      (B, T) -> {'logits' (B, N), 'routing_weights' (B, K, 2)}, i.e. the model
                      inputs `augment.eval_inputs` makes (coordinates after sampling and
                      normalisation, the confidence last; preprocessing.json says how).
  pipeline.jaxexport  the same model with the preprocessing inside: raw windows keypoints
                      (B, L, V, C), confidence (B, L, V), num_frames (B,) -> logits,
                      probabilities, routing_weights, person_frames (what `--mode=predict` runs;
                      frames with nobody detected are masked).
  params.npz          the weights, passed to both artifacts as their first argument (p0000, ...).
  labels.json         the class names, by class index.
  preprocessing.json  layout (joint names, coordinate channels, root and scale joints), T, the
                      sampling, normalisation and stream settings, the default prediction window.
  manifest.json       checkpoint step, platforms, jax version, the files, and the sha256 of each
                      file the loader reads (the artifacts, params.npz, labels.json,
                      preprocessing.json).
  load_exported.py    a copy of `load_exported` below: runs the artifacts with jax + numpy only.

The loader checks every file it reads against its sha256 in manifest.json and refuses a file
changed after export (a replaced weight, shuffled labels) with a one-line error naming it.

B (and L for the pipeline) are symbolic: any batch size and window length run without a
re-export. The artifacts are lowered for CPU and CUDA (and TPU where this jax can lower for it).

The loader section of this module (`ExportedModel`, `load_exported`, `file_sha256` and the
file-name constants) uses only hashlib, json, os, jax and numpy, so `load_exported.py` is written
from its source.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from micro_dualnet_jax import atomic, dirlock
from micro_dualnet_jax.config import RunConfig

MODEL_FILE = 'model.jaxexport'
PIPELINE_FILE = 'pipeline.jaxexport'
PARAMS_FILE = 'params.npz'
LABELS_FILE = 'labels.json'
PREPROCESSING_FILE = 'preprocessing.json'
MANIFEST_FILE = 'manifest.json'
LOADER_FILE = 'load_exported.py'
ARTIFACTS = {'model': MODEL_FILE, 'pipeline': PIPELINE_FILE}
PLATFORMS = ('cpu', 'cuda', 'tpu')


# ----------------------------------------------------------------------------- loader (jax + numpy)


def file_sha256(path):
  """The sha256 of a file's bytes, as hex."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()



class ExportedModel:
  """A deserialized artifact with its weights: call it with numpy or jax arrays.

  Attributes:
    kind: 'model' or 'pipeline'.
    exported: the `jax.export.Exported`.
    labels: class names by index.
    preprocessing: the preprocessing settings (preprocessing.json).
  """

  def __init__(self, kind, exported, params, labels, preprocessing):
    self.kind, self.exported, self.labels = kind, exported, labels
    self.preprocessing = preprocessing
    self._params = params
    self._input_avals = exported.in_avals[len(params):]

  def __call__(self, *inputs):
    """model: (keypoints (B, T, V, C+1), frame_mask (B, T)); pipeline: (keypoints (B, L, V, C),
    confidence (B, L, V), num_frames (B,)). Returns a dict of numpy arrays."""
    if len(inputs) != len(self._input_avals):
      raise ValueError(f'the {self.kind} artifact takes {len(self._input_avals)} arrays '
                       f'{[str(a) for a in self._input_avals]}, got {len(inputs)}')
    arrays = [np.asarray(x, aval.dtype) for x, aval in zip(inputs, self._input_avals)]
    outputs = self.exported.call(self._params, *arrays)
    return {key: np.asarray(value) for key, value in outputs.items()}


def load_exported(path, kind='model'):
  """Loads an exported model (needs only json, os, jax and numpy).

  Args:
    path: the export folder, or an artifact file in it.
    kind: 'model' or 'pipeline' (ignored when `path` names an artifact file).

  Returns:
    An `ExportedModel`: fn(*inputs) -> dict of numpy arrays.
  """
  if os.path.isdir(path):
    folder = path
    if kind not in ARTIFACTS:
      raise ValueError(f'kind must be one of {sorted(ARTIFACTS)}, got {kind!r}')
    file = os.path.join(folder, ARTIFACTS[kind])
  else:
    folder, file = os.path.dirname(path) or '.', path
    kinds = {name: k for k, name in ARTIFACTS.items()}
    kind = kinds.get(os.path.basename(file), kind)
  for needed in (file, os.path.join(folder, PARAMS_FILE), os.path.join(folder, MANIFEST_FILE)):
    if not os.path.isfile(needed):
      raise FileNotFoundError(f'{needed}: not found; export the model with --mode=export')
  with open(os.path.join(folder, MANIFEST_FILE)) as f:
    checksums = json.load(f).get('sha256')
  if not isinstance(checksums, dict):
    raise ValueError(f'{os.path.join(folder, MANIFEST_FILE)} has no checksums (an older '
                     'export): export the model again with --mode=export')
  for path in (file, *(os.path.join(folder, name)
                       for name in (PARAMS_FILE, LABELS_FILE, PREPROCESSING_FILE))):
    expected, actual = checksums.get(os.path.basename(path)), file_sha256(path)
    if actual != expected:
      raise ValueError(f'{path}: sha256 {actual} differs from the {expected} in {MANIFEST_FILE}: '
                       'the file was changed after export; export the model again')
  with open(file, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with np.load(os.path.join(folder, PARAMS_FILE)) as data:
    params = [jax.device_put(data[f'p{i:04d}']) for i in range(len(data.files))]
  with open(os.path.join(folder, LABELS_FILE)) as f:
    labels = json.load(f)
  with open(os.path.join(folder, PREPROCESSING_FILE)) as f:
    preprocessing = json.load(f)
  return ExportedModel(kind, exported, params, labels, preprocessing)


# ----------------------------------------------------------------------------- export


def _lower(fn: Callable[..., Any], *specs: Any) -> jax.export.Exported:
  """jax.export for every platform in PLATFORMS this jax can lower for (at least this one)."""
  jitted = jax.jit(fn)
  platforms = list(PLATFORMS)
  default = jax.export.default_export_platform()
  while True:
    try:
      return jax.export.export(jitted, platforms=platforms)(*specs)
    except Exception:  # pylint: disable=broad-except
      # A platform this jax cannot lower for on this machine: drop it, keep the others.
      extra = [p for p in platforms if p != default]
      if not extra:
        raise
      platforms.remove(extra[-1])


def preprocessing_settings(config: RunConfig) -> dict[str, Any]:
  """What a user must do to raw pose data to feed `model.jaxexport` (and what the pipeline
  artifact does itself), from the trained run's config."""
  from micro_dualnet_jax.skeleton import get_layout  # pylint: disable=g-import-not-at-top
  layout = get_layout(config.model.layout)
  aug = config.augment
  return {
      'layout': layout.name,
      'joint_names': list(layout.joint_names),
      'num_joints': layout.num_joints,
      'coord_dims': layout.coord_dims,
      'parents': list(layout.parents),
      'center_joints': list(layout.center_joints),
      'scale_pair': list(layout.scale_pair),
      'entity_names': list(config.model.entity_names),
      'num_frames': aug.num_frames,
      'normalize': aug.normalize,
      'align_yaw': aug.align_yaw,
      'torso_pairs': [list(pair) for pair in layout.torso_pairs],
      'stream': aug.stream,
      'pad_instead_of_resample': aug.pad_instead_of_resample,
      'sampling': ('A clip (or window) of n valid frames is read into T = num_frames frames: '
                   'output frame t takes input frame floor((2t + 1) n / (2T)) (nearest frame to '
                   'the centre of each of T equal segments); with pad_instead_of_resample and '
                   'n <= T, frame t = t for t < n and the rest is padding (frame_mask 0).'),
      'normalisation': ('If normalize: missing joints (confidence 0) stay 0; the clip is shifted '
                        'by the mean of the visible center_joints in the first frame that has '
                        'one (else by the mean of all visible joints), then divided by the '
                        'median over frames of the distance between the two scale_pair joints '
                        '(where both are visible; kept when there is none).'),
      'alignment': ('If align_yaw (3D): after normalisation the clip is rotated about the y '
                    'axis so that a = sum over visible torso_pairs of (left - right), in the '
                    'first real frame where its (x, z) part is non-zero, has z = 0 and x > 0: '
                    "x' = c x + s z, z' = -s x + c z with (c, s) = (a_x, a_z) / |(a_x, a_z)|."),
      'model_input': ('keypoints (B, T, V, C + 1): the normalised coordinates (stream: joint; '
                      'bone / motion streams as micro_dualnet_jax.pipeline.augment.to_stream) with '
                      'the joint confidence last (0 for missing joints, whose coordinates are '
                      '0); frame_mask (B, T): 1 for real frames, 0 for padding and for frames '
                      'with nobody detected.'),
      'pipeline_input': ('keypoints (B, L, V, C) in the units of the data (pixels / metres), '
                         'confidence (B, L, V) (0: missing joint; a frame with nobody has 0 '
                         'everywhere), num_frames (B,) the valid length of each row.'),
      'default_window': config.default_predict_window(),
      'default_stride': max(config.default_predict_window() // 2, 1),
  }


def restore_for_export(config: RunConfig | None, workdir: str, *, use_best: bool = True
                       ) -> tuple[RunConfig, Any, jax.sharding.Mesh]:
  """(the run's config, its `inference.RestoredModel`, a one-device mesh): the model of
  `workdir`'s best (else latest) checkpoint, as every export format starts from."""
  from micro_dualnet_jax import inference, rundir  # pylint: disable=g-import-not-at-top
  run = rundir.RunDir(workdir)
  run.require_single_run('export')
  run_config = inference.run_config(run, config)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  model = inference.restore_model(run, which='best' if use_best else 'latest', mesh=mesh,
                                  config=run_config)
  return run_config, model, mesh


def export_workdir(config: RunConfig | None, workdir: str, output_dir: str | None = None, *,
                   use_best: bool = True) -> dict[str, Any]:
  """Exports the trained model of `workdir` into `output_dir` (module docstring).

  Args:
    config: the command-line config, if one was given (the model comes from
      `<workdir>/config.json`; a differing model section is noted).
    workdir: the trained run.
    output_dir: default `<workdir>/export`.
    use_best: export the best checkpoint when there is one (else the latest).

  Returns:
    The manifest (also written to manifest.json).
  """
  # The model code is needed to export, not to load: imported here, not at module level.
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax import inference  # pylint: disable=g-import-not-at-top

  run_config, model, mesh = restore_for_export(config, workdir, use_best=use_best)
  step = model.step
  weights = (model.params, model.model_state)
  leaves, treedef = jax.tree.flatten(weights)
  leaves = [np.asarray(x) for x in leaves]
  predictor = inference.Predictor(model, mesh=mesh)
  graphdef = model.graphdef
  forward = inference.window_forward(graphdef, predictor.layout, predictor.aug)

  def model_fn(params, keypoints, frame_mask):
    p, r = jax.tree.unflatten(treedef, params)
    logits, aux = nnx.merge(graphdef, p, r)(keypoints, frame_mask, deterministic=True)
    return {'logits': logits, 'routing_weights': aux['routing_weights']}

  def pipeline_fn(params, keypoints, confidence, num_frames):
    p, r = jax.tree.unflatten(treedef, params)
    return forward(p, r, {'keypoints': keypoints, 'confidence': confidence,
                          'num_frames': num_frames})

  layout = predictor.layout
  v, c, t = layout.num_joints, layout.coord_dims, predictor.aug.num_frames
  param_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
  f32 = np.float32
  b, = jax.export.symbolic_shape('b')
  model_exported = _lower(model_fn, param_specs, jax.ShapeDtypeStruct((b, t, v, c + 1), f32),
                          jax.ShapeDtypeStruct((b, t), f32))
  b, length = jax.export.symbolic_shape('b, l')
  pipeline_exported = _lower(
      pipeline_fn, param_specs, jax.ShapeDtypeStruct((b, length, v, c), f32),
      jax.ShapeDtypeStruct((b, length, v), f32), jax.ShapeDtypeStruct((b,), np.int32))

  output_dir = output_dir or os.path.join(workdir, 'export')
  with dirlock.output_folder(output_dir, 'exporting'):
    for name, exported in ((MODEL_FILE, model_exported), (PIPELINE_FILE, pipeline_exported)):
      with atomic.atomic_path(os.path.join(output_dir, name)) as path, open(path, 'wb') as f:
        f.write(exported.serialize())
    with atomic.atomic_path(os.path.join(output_dir, PARAMS_FILE)) as path:
      np.savez(path, **{f'p{i:04d}': x for i, x in enumerate(leaves)})
    atomic.write_json(os.path.join(output_dir, LABELS_FILE), predictor.class_names)
    atomic.write_json(os.path.join(output_dir, PREPROCESSING_FILE),
                      preprocessing_settings(run_config))
    _write_standalone_loader(os.path.join(output_dir, LOADER_FILE))

    checked = (MODEL_FILE, PIPELINE_FILE, PARAMS_FILE, LABELS_FILE, PREPROCESSING_FILE)
    manifest = {
        'workdir': os.path.abspath(workdir), 'checkpoint_step': step,
        'layout': layout.name, 'num_classes': len(predictor.class_names),
        'platforms': list(model_exported.platforms), 'jax_version': jax.__version__,
        'files': sorted({*checked, LOADER_FILE, MANIFEST_FILE}),
        'sha256': {name: file_sha256(os.path.join(output_dir, name)) for name in checked},
    }
    atomic.write_json(os.path.join(output_dir, MANIFEST_FILE), manifest)
  return manifest


def _write_standalone_loader(path: str) -> None:
  """Writes the loader section of this module as a file that imports only json, os, jax, numpy."""
  constants = {name: globals()[name] for name in (
      'PARAMS_FILE', 'LABELS_FILE', 'PREPROCESSING_FILE', 'MANIFEST_FILE', 'ARTIFACTS')}
  source = [
      '"""Loads the Micro-DualNet artifacts in this folder; needs only jax and numpy.\n\n'
      '    from load_exported import load_exported\n'
      '    model = load_exported(FOLDER)                 # or load_exported(FOLDER, "pipeline")\n'
      '    out = model(keypoints, frame_mask)            # dict: logits, routing_weights\n\n'
      'Written by micro_dualnet_jax.export; see preprocessing.json for the inputs.\n"""\n',
      'import hashlib\nimport json\nimport os\n\nimport jax\nimport numpy as np\n',
      *(f'{name} = {value!r}' for name, value in constants.items()), '',
      inspect.getsource(file_sha256), inspect.getsource(ExportedModel),
      inspect.getsource(load_exported)]
  atomic.write_text(path, '\n'.join(source))


def run_export(config: RunConfig | None, workdir: str, output_dir: str | None = None
               ) -> dict[str, Any]:
  """`--mode=export` (`--export_format=jax`): exports `workdir`'s model into `output_dir`
  (default <workdir>/export) and prints where the files went. The ONNX format is
  `export_onnx.run_export`."""
  folder = output_dir or os.path.join(workdir, 'export')
  manifest = export_workdir(config, workdir, output_dir)
  print_manifest(manifest, workdir, folder, 'jax')
  return manifest


def print_manifest(manifest: dict[str, Any], workdir: str, folder: str, export_format: str
                   ) -> None:
  """The lines `--mode=export` prints: what was exported, where, and its files."""
  print(f'Exported checkpoint step {manifest["checkpoint_step"]} of {workdir} to {folder} '
        f'({export_format}; platforms: {", ".join(manifest["platforms"])}):', flush=True)
  for name in manifest['files']:
    print(f'  {name}', flush=True)

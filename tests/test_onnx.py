"""ONNX export (micro_dualnet_jax/export_onnx.py) and its numpy + onnxruntime loader
(micro_dualnet_jax/onnx_loader.py).

The loader's numpy preprocessing is checked against the JAX pipeline without the optional extra;
the export tests need it (`pip install -r requirements-onnx.txt`) and skip without it. The
trained run's export, the example and the NW-UCLA test view are end to end, marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from configs import nwucla as nwucla_config
from micro_dualnet_jax import cli, export, inference, onnx_loader, train
from micro_dualnet_jax.config import AugmentConfig, RunConfig
from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.data.readers import read_nwucla
from micro_dualnet_jax.pipeline import augment, datasets
from micro_dualnet_jax.pipeline.loader import pad_clips
from micro_dualnet_jax.models import MicroDualNet
from micro_dualnet_jax.rundir import RunDir
from micro_dualnet_jax.skeleton import get_layout
from tests.support import smoke_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
NWUCLA_ROOT = ROOT.parent / 'shared' / 'datasets' / 'nw_ucla'
HAS_EXTRA = all(importlib.util.find_spec(name) for name in ('jax2onnx', 'onnxruntime'))
needs_extra = pytest.mark.skipif(
    not HAS_EXTRA, reason='the optional onnx extra is not installed (pip install -r '
    'requirements-onnx.txt)')


def raw_windows(layout_name: str, batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
  """Random raw windows in data units: lengths 0..L, joints missing at random, rows with frames
  of nobody, 3D or 2D as the layout is."""
  layout = get_layout(layout_name)
  rng = np.random.default_rng(seed)
  v, c = layout.num_joints, layout.coord_dims
  keypoints = rng.normal(size=(batch, length, v, c)) * (0.4 if c == 3 else 80.0) + (
      0.0 if c == 3 else 300.0)
  confidence = rng.uniform(0.2, 1.0, (batch, length, v)) * (rng.random((batch, length, v)) > 0.15)
  confidence[1, ::3] = 0.0                             # frames with nobody
  confidence[2, :, list(layout.center_joints)] = 0.0   # no root joint: the centroid is used
  num_frames = rng.integers(1, length + 1, batch)
  num_frames[0] = length
  num_frames[3] = 0                                    # a filler row
  keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
  return {'keypoints': keypoints.astype(np.float32), 'confidence': confidence.astype(np.float32),
          'num_frames': num_frames.astype(np.int32)}


def jax_model_inputs(batch, layout, aug):
  """What the JAX pipeline (`inference.window_forward`) feeds the model."""
  inputs = augment.eval_inputs(batch, layout, aug)
  indices, _ = augment.frame_indices(batch['num_frames'], batch['keypoints'].shape[1],
                                     aug.num_frames, pad=aug.pad_instead_of_resample)
  person = np.any(batch['confidence'] > 0, axis=-1).astype(np.float32)
  return {'keypoints': np.asarray(inputs['keypoints']),
          'frame_mask': np.asarray(inputs['frame_mask']) * np.take_along_axis(person, indices, 1)}


@pytest.mark.parametrize('layout_name, settings', [
    ('openpose22', {}),
    ('openpose22', {'stream': 'bone_motion', 'pad_instead_of_resample': True}),
    ('kinect20', {'align_yaw': True, 'stream': 'joint_motion'}),
    ('kinect20', {'stream': 'bone', 'normalize': False}),
], ids=['2d-joint', '2d-bone_motion-pad', '3d-yaw-joint_motion', '3d-bone-raw'])
def test_numpy_preprocessing_matches_the_jax_pipeline(layout_name, settings):
  layout = get_layout(layout_name)
  aug = AugmentConfig(num_frames=16, **settings)
  config = smoke_config('/unused', **{'model.layout': layout_name, 'model.num_frames': 16},
                        **{f'augment.{key}': value for key, value in settings.items()})
  prep = export.preprocessing_settings(config)
  for seed, length in ((0, 40), (1, 9)):               # longer and shorter than T
    batch = raw_windows(layout_name, 6, length, seed)
    got = onnx_loader.model_inputs(batch['keypoints'], batch['confidence'],
                                   batch['num_frames'], prep)
    want = jax_model_inputs(batch, layout, aug)
    np.testing.assert_array_equal(got['frame_mask'], want['frame_mask'])
    np.testing.assert_allclose(got['keypoints'], want['keypoints'], rtol=1e-5, atol=1e-5)


def test_the_loader_imports_no_jax():
  done = subprocess.run(
      [sys.executable, '-c', 'import sys; import micro_dualnet_jax.onnx_loader; '
       'print("jax" in sys.modules)'], cwd=ROOT, capture_output=True, text=True, check=True)
  assert done.stdout.strip() == 'False'


def test_missing_extra_is_one_line_before_anything_is_read(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'jax2onnx', None)   # an import of it raises ImportError
  with pytest.raises(SystemExit) as exit_info:
    cli.run('export', smoke_config(str(tmp_path)), str(tmp_path / 'no_run'),
            export_format='onnx')
  assert exit_info.value.code == 2
  assert not (tmp_path / 'no_run').exists()


# ----------------------------------------------------------------------------- with the extra


def _check_against_jax(folder, model, config, batches):
  """onnxruntime through load_onnx.py against JAX's window forward pass on the same raw batches:
  (max |logit difference|, ONNX predictions, JAX predictions)."""
  loaded = onnx_loader.load_onnx(str(folder))
  forward = jax.jit(inference.window_forward(model.graphdef, get_layout(config.model.layout),
                                             config.augment))
  diffs, onnx_pred, jax_pred = [], [], []
  for batch in batches:
    got = loaded.run(batch['keypoints'], batch['confidence'], batch['num_frames'])
    want = forward(model.params, model.model_state, {k: batch[k] for k in (
        'keypoints', 'confidence', 'num_frames')})
    diffs.append(np.abs(got['logits'] - np.asarray(want['logits'])).max())
    np.testing.assert_allclose(got['routing_weights'], want['routing_weights'], atol=1e-4)
    np.testing.assert_array_equal(got['person_frames'], want['person_frames'])
    onnx_pred.append(got['logits'].argmax(-1))
    jax_pred.append(np.asarray(want['logits']).argmax(-1))
  return max(diffs), np.concatenate(onnx_pred), np.concatenate(jax_pred)


def _untrained(config):
  """`config`'s model, untrained, as `inference.restore_model` gives a trained one (evaluation
  mode, no dropout RNG streams)."""
  module = MicroDualNet(config.model, rngs=nnx.Rngs(params=0))
  module.eval()
  graphdef, params, model_state = nnx.split(module, nnx.Param, ...)
  return inference.RestoredModel(graphdef, params, model_state, 0, config, 'latest',
                                 config.data.class_names)


@needs_extra
def test_untrained_smoke_model_matches_jax_on_32_random_clips(tmp_path):
  from micro_dualnet_jax import export_onnx  # pylint: disable=g-import-not-at-top
  config = smoke_config(str(tmp_path))
  model = _untrained(config)
  manifest = export_onnx.export_model(model, config, str(tmp_path / 'export'))
  assert manifest['max_abs_logit_difference_vs_jax'] < 1e-4
  random = [raw_windows('openpose22', 16, config.data.max_frames, seed) for seed in (0, 1)]
  diff, onnx_pred, jax_pred = _check_against_jax(tmp_path / 'export', model, config, random)
  assert diff < 1e-4
  np.testing.assert_array_equal(onnx_pred, jax_pred)


@pytest.fixture(name='smoke_export', scope='module')
def _smoke_export(tmp_path_factory):
  folder = tmp_path_factory.mktemp('onnx_smoke')
  config = smoke_config(str(folder / 'tfds'))
  train.train_and_evaluate(config, str(folder / 'run'))
  cli.run('export', config, str(folder / 'run'), export_format='onnx', config_given=False)
  return config, folder / 'run', folder / 'run' / 'export_onnx'


@pytest.mark.slow
@needs_extra
def test_export_writes_the_model_its_settings_and_the_loader(smoke_export):
  config, workdir, folder = smoke_export
  manifest = json.loads((folder / 'manifest.json').read_text())
  assert sorted(manifest['files']) == sorted(
      ['labels.json', 'load_onnx.py', 'manifest.json', 'model.onnx', 'preprocessing.json'])
  assert manifest['checkpoint_step'] == config.run.num_train_steps
  assert manifest['max_abs_logit_difference_vs_jax'] < 1e-4
  assert json.loads((folder / 'preprocessing.json').read_text()) == json.loads(
      json.dumps(export.preprocessing_settings(RunDir(str(workdir)).config())))
  assert json.loads((folder / 'labels.json').read_text()) == synthetic.class_names()
  assert (folder / 'load_onnx.py').read_text() == pathlib.Path(onnx_loader.__file__).read_text()


@pytest.mark.slow
@needs_extra
def test_onnx_matches_jax_on_random_clips_and_the_whole_eval_split(smoke_export):
  config, workdir, folder = smoke_export
  model = inference.restore_model(str(workdir))
  random = [raw_windows('openpose22', 16, config.data.max_frames, seed) for seed in (0, 1)]
  diff, _, _ = _check_against_jax(folder, model, config, random)       # 32 random clips
  assert diff < 1e-4
  records = list(datasets.load_eval_split(config).eval)
  batch = pad_clips(records, config.data.max_frames)
  diff, onnx_pred, jax_pred = _check_against_jax(folder, model, config, [batch])
  assert diff < 1e-4
  labels = batch['label']
  assert len(labels) == config.data.options['num_test']
  np.testing.assert_array_equal(onnx_pred, jax_pred)
  # The run's own evaluation of the same checkpoint (one view), from eval_metrics.json.
  top1 = 100.0 * np.mean(onnx_pred == labels)
  assert top1 == pytest.approx(json.loads((workdir / 'eval_metrics.json').read_text())['top1'])


@pytest.mark.slow
@needs_extra
def test_the_example_runs_the_export_without_jax(smoke_export, tmp_path):
  _, _, folder = smoke_export
  frames = raw_windows('openpose22', 4, 200, 0)   # row 1: nobody in every third frame
  recording = np.concatenate([frames['keypoints'][1], frames['confidence'][1][..., None]], -1)
  np.save(tmp_path / 'recording.npy', recording)
  done = subprocess.run([sys.executable, str(ROOT / 'examples' / 'onnx_recording.py'),
                         f'--export={folder}', f'--recording={tmp_path / "recording.npy"}'],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  assert lines[-1] == 'jax imported: False'
  assert lines[-2].startswith('11 windows of 32 frames')   # starts 0, 16, ..., 160


@pytest.mark.slow
@needs_extra
@pytest.mark.skipif(not NWUCLA_ROOT.is_dir(), reason=f'{NWUCLA_ROOT} not present')
def test_nwucla_config_model_matches_on_random_clips_and_the_whole_test_view(tmp_path):
  config = nwucla_config.get_config()   # the NW-UCLA model at tiny sizes, untrained
  config.model.width, config.model.num_heads = 16, 2
  config.model.spatial_layers = config.model.temporal_layers = 1
  config = RunConfig.from_config_dict(config)
  model = _untrained(config)
  from micro_dualnet_jax import export_onnx  # pylint: disable=g-import-not-at-top
  manifest = export_onnx.export_model(model, config, str(tmp_path))
  assert manifest['layout'] == 'kinect20' and manifest['num_classes'] == 10
  random = [raw_windows('kinect20', 16, 64, seed) for seed in (0, 1)]
  diff, _, _ = _check_against_jax(tmp_path, model, config, random)      # 32 random clips
  assert diff < 1e-4
  clips = read_nwucla(NWUCLA_ROOT, 'test')
  assert len(clips) == 464
  batches = [pad_clips(clips[i:i + 116], config.data.max_frames) for i in range(0, 464, 116)]
  diff, onnx_pred, jax_pred = _check_against_jax(tmp_path, model, config, batches)
  assert diff < 1e-4
  labels = np.concatenate([b['label'] for b in batches])
  assert np.mean(onnx_pred == labels) == np.mean(jax_pred == labels)
  np.testing.assert_array_equal(onnx_pred, jax_pred)


@pytest.mark.slow
@needs_extra
def test_bfloat16_model_is_exported_computing_in_float32(tmp_path):
  # onnxruntime has no bfloat16 einsum on CPU: the graph computes in float32 with the run's
  # (float32) parameters; the manifest measures both differences.
  from micro_dualnet_jax import export_onnx  # pylint: disable=g-import-not-at-top
  config = smoke_config(str(tmp_path), **{'model.dtype': 'bfloat16'})
  manifest = export_onnx.export_model(_untrained(config), config, str(tmp_path / 'export'))
  assert (manifest['compute_dtype'], manifest['run_compute_dtype']) == ('float32', 'bfloat16')
  assert manifest['max_abs_logit_difference_vs_jax'] < 1e-4
  assert 1e-4 < manifest['max_abs_logit_difference_vs_jax_run_dtype'] < 0.1

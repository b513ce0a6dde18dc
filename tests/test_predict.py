"""Prediction on long recordings in every input format, layout errors, export round trip."""

import csv
import json
import math
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from configs import smoke
from support import typed
from micro_dualnet_jax import cli, export, inference, predict, timeline, train
from micro_dualnet_jax.data import recordings
from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.pipeline import augment
from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.dirlock import DirectoryLock
from micro_dualnet_jax.errors import DirectoryInUseError
from micro_dualnet_jax.skeleton import get_layout

pytestmark = pytest.mark.slow   # a trained work directory and a 4,500-frame recording

GAPS = (0, 25, 90, 7, 160)   # empty-frame runs put between the clips, cycled
JSON_FRAMES = 2000
OPENPOSE22, OPENPOSE35 = get_layout('openpose22'), get_layout('openpose35')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  config = smoke.get_config()
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  path = str(tmp_path_factory.mktemp('run'))
  train.train_and_evaluate(typed(config), path)
  return path


@pytest.fixture(scope='module')
def config():
  return typed(smoke.get_config())


@pytest.fixture(scope='module')
def stream():
  """A ~4500-frame openpose35 recording: synthetic clips with runs of empty frames between."""
  clips = synthetic.generate_split('test', num_clips=32, seed=3, layout='openpose35')
  keypoints, confidence = [], []
  for i, clip in enumerate(clips):
    gap = GAPS[i % len(GAPS)]
    keypoints += [np.zeros((gap, 35, 2), np.float32), clip.keypoints]
    confidence += [np.zeros((gap, 35), np.float32), clip.confidence]
  keypoints, confidence = np.concatenate(keypoints), np.concatenate(confidence)
  gap_frames = sum(GAPS[i % len(GAPS)] for i in range(len(clips)))
  assert np.sum(~(confidence > 0).any(-1)) == gap_frames   # the gaps are the only empty frames
  return keypoints, confidence


@pytest.fixture(scope='module')
def inputs(stream, tmp_path_factory):
  """The stream written in every input format."""
  keypoints, confidence = stream
  folder = tmp_path_factory.mktemp('inputs')
  to22 = OPENPOSE22.map_from(OPENPOSE35)
  paths = {'npy': folder / 'session.npy', 'csv': folder / 'session_light_hand.csv',
           'pkl': folder / 'session.pkl', 'json': folder / 'openpose'}
  np.save(paths['npy'], np.concatenate([keypoints[:, to22], confidence[:, to22, None]], -1))
  np.save(folder / 'prefix.npy', np.concatenate(
      [keypoints[:JSON_FRAMES, to22], confidence[:JSON_FRAMES, to22, None]], -1))
  # iMiGUE raw CSV: frame index, then 35 x (x, y, c); 9 significant digits round-trip float32.
  table = np.concatenate([np.arange(len(keypoints))[:, None],
                          np.concatenate([keypoints, confidence[..., None]], -1).reshape(
                              len(keypoints), -1)], 1)
  np.savetxt(paths['csv'], table, delimiter=',', fmt='%.9g')
  with open(paths['pkl'], 'wb') as f:
    pickle.dump([{'frame_dir': 'session', 'label': 0, 'total_frames': len(keypoints),
                  'img_shape': (1080, 1920), 'original_shape': (1080, 1920),
                  'keypoint': keypoints[None][:, :, to22],
                  'keypoint_score': confidence[None][:, :, to22]}], f)
  paths['json'].mkdir()
  joints = np.concatenate([keypoints, confidence[..., None]], -1)
  for t in range(JSON_FRAMES):
    people = []
    if (confidence[t] > 0).any():
      hands = np.zeros((2, 21, 3), np.float32)
      hands[:, [4, 8, 12, 16, 20]] = joints[t, 25:].reshape(2, 5, 3)   # right tips, left tips
      people.append({'pose_keypoints_2d': joints[t, :25].ravel().tolist(),
                     'hand_right_keypoints_2d': hands[0].ravel().tolist(),
                     'hand_left_keypoints_2d': hands[1].ravel().tolist()})
    (paths['json'] / f'session_{t:012d}_keypoints.json').write_text(
        json.dumps({'version': 1.3, 'people': people}))
  return paths


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_long_recording_windows_timeline_and_shares(workdir, config, stream, inputs, tmp_path,
                                                    capsys):
  keypoints, confidence = stream
  total = len(keypoints)
  person = (confidence > 0).any(-1)
  num_classes = config.model.num_classes
  [summary] = predict.run_predict(config, workdir, str(inputs['npy']), str(tmp_path / 'out'),
                                  top_k=num_classes, smoothing=1)
  window, stride = summary['window'], summary['stride']
  assert (window, stride) == (32, 16)   # min(2 * num_frames, max_frames), window // 2
  expected = 1 + math.ceil((total - window) / stride)
  rows = _rows(tmp_path / 'out' / 'windows.csv')
  assert summary['windows']['total'] == len(rows) == expected
  assert int(rows[-1]['end_frame']) == total - 1
  starts = np.array([int(r['start_frame']) for r in rows])
  empty_windows = [not person[s:s + window].any() for s in starts]
  assert [r['status'] == 'no person' for r in rows] == empty_windows
  assert summary['windows']['no_person'] == sum(empty_windows) > 0
  assert 'windows' in capsys.readouterr().err   # the progress bar

  # The timeline is the argmax of the mean window probability over the windows covering a frame.
  probs = np.zeros((len(rows), num_classes))
  names = list(synthetic.class_names())
  for w, row in enumerate(rows):
    if row['status'] == 'ok':
      for i in range(num_classes):
        probs[w, names.index(row[f'top{i + 1}'])] = float(row[f'top{i + 1}_prob'])
  oracle = np.full(total, -1)
  for t in np.flatnonzero(person):
    covering = [w for w, s in enumerate(starts) if s <= t < s + window]
    oracle[t] = np.argmax(probs[covering].mean(0))
  timeline = np.full(total, -2)
  for row in _rows(tmp_path / 'out' / 'timeline.csv'):
    label = row['label']
    timeline[int(row['start_frame']):int(row['end_frame']) + 1] = (
        -1 if label == 'no person' else names.index(label))
  np.testing.assert_array_equal(timeline, oracle)

  # Percent of time: sums to 100, 'no person' is exactly the share of empty frames.
  shares = summary['percent_of_time']
  assert sum(shares.values()) == pytest.approx(100.0)
  assert shares['no person'] == pytest.approx(100.0 * np.mean(~person))
  assert summary['empty_frames'] == int(np.sum(~person))
  for name, frames in summary['frames'].items():
    assert frames == np.sum(timeline == (-1 if name == 'no person' else names.index(name)))
  assert sum(summary['percent_of_person_time'].values()) == pytest.approx(100.0)
  assert (tmp_path / 'out' / 'timeline.png').stat().st_size > 0
  with open(tmp_path / 'out' / 'summary.json') as f:
    assert json.load(f)['percent_of_time'] == shares


@pytest.mark.parametrize('fmt', ['csv', 'pkl', 'json'])
def test_every_input_format_gives_the_same_result(workdir, config, inputs, tmp_path, fmt,
                                                  capsys):
  reference = inputs['npy'] if fmt != 'json' else inputs['npy'].parent / 'prefix.npy'
  [expected] = predict.run_predict(config, workdir, str(reference), str(tmp_path / 'npy'),
                                   verbose=False)
  [result] = predict.run_predict(config, workdir, str(inputs[fmt]), str(tmp_path / fmt),
                                 verbose=False)
  if fmt in ('csv', 'json'):   # openpose35 (BODY_25 + hand tips) -> openpose22, said so
    assert "converting joint layout 'openpose35' to the model's 'openpose22'" in \
        capsys.readouterr().out
  assert result['num_frames'] == expected['num_frames']
  assert result['windows'] == expected['windows']
  assert result['frames'] == expected['frames']
  assert result['empty_frames'] == expected['empty_frames'] > 0
  assert (tmp_path / fmt / 'windows.csv').read_text() == (tmp_path / 'npy' / 'windows.csv'
                                                           ).read_text()
  # The smoothed timeline only relabels frames with a person.
  assert result['percent_of_time']['no person'] == pytest.approx(result['empty_percent'])


def test_majority_filter_and_window_starts():
  labels = np.array([0, 0, 0, 1, 0, 0, -1, -1, 2, 2, 1, 2, 2])
  np.testing.assert_array_equal(timeline.majority_filter(labels, 3, 3),
                                [0, 0, 0, 0, 0, 0, -1, -1, 2, 2, 2, 2, 2])
  np.testing.assert_array_equal(timeline.majority_filter(labels, 1, 3), labels)
  np.testing.assert_array_equal(timeline.window_starts(100, 32, 16), [0, 16, 32, 48, 64, 68])
  np.testing.assert_array_equal(timeline.window_starts(20, 32, 16), [0])
  with pytest.raises(ValueError, match='stride 40 is longer than the window 32'):
    predict.PredictOptions(stride=40).resolved(16, 48)
  with pytest.raises(ValueError, match='odd number of frames'):
    predict.PredictOptions(smoothing=4)


def test_mismatched_layouts_are_refused_with_both_names(workdir, config, tmp_path, capsys):
  frames = np.ones((50, 17, 3), np.float32)
  np.save(tmp_path / 'coco.npy', frames)
  with pytest.raises(DataFormatError,
                     match=r"layout is 'coco17' \(17 joints\) but the model was trained on layout "
                           r"'openpose22' \(22 joints\).*lacks"):
    predict.run_predict(config, workdir, str(tmp_path / 'coco.npy'), str(tmp_path / 'o'))
  np.save(tmp_path / 'odd.npy', np.ones((50, 19, 3), np.float32))
  with pytest.raises(DataFormatError, match=r"19 joints matches no registered 2D layout.*"
                                            r"'openpose22' \(22 joints\)"):
    predict.run_predict(config, workdir, str(tmp_path / 'odd.npy'), str(tmp_path / 'o'))
  np.save(tmp_path / 'kinect.npy', np.ones((50, 25, 3), np.float32))
  with pytest.raises(DataFormatError, match="'kinect25' .* 'openpose22' .*3D and the model 2D"):
    recordings.load_recordings(tmp_path / 'kinect.npy', 'openpose22', input_layout='kinect25')
  with open(tmp_path / 'coco.pkl', 'wb') as f:
    pickle.dump([{'frame_dir': 'x', 'label': 0, 'keypoint': frames[None, ..., :2],
                  'keypoint_score': frames[None, ..., 2]}], f)
  with pytest.raises(DataFormatError, match=r"coco.pkl \[annotation 0\].*'coco17'.*'openpose22'"):
    recordings.load_recordings(tmp_path / 'coco.pkl', 'openpose22')
  # Through --mode=predict: a message and exit status 2, no traceback.
  with pytest.raises(SystemExit) as exit_info:
    cli.run('predict', config, workdir, input_path=str(tmp_path / 'coco.npy'),
            output_dir=str(tmp_path / 'o'))
  assert exit_info.value.code == 2
  assert "error:" in capsys.readouterr().err


def test_short_input_gives_a_clip_prediction_and_an_animation(workdir, config, tmp_path, capsys):
  [clip] = synthetic.generate_split('test', num_clips=1, seed=5, layout='openpose22')
  clip_frames = np.concatenate([clip.keypoints, clip.confidence[..., None]], -1)[:30]
  clip_frames[:4] = 0.0   # nobody in the first frames
  np.save(tmp_path / 'clip.npy', clip_frames)
  [result] = predict.run_predict(config, workdir, str(tmp_path / 'clip.npy'), str(tmp_path / 'a'))
  assert result['status'] == 'ok' and result['empty_frames'] == 4
  probs = [entry['probability'] for entry in result['top_k']]
  assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
  assert list(result['routing_weights']) == list(OPENPOSE22.entity_names)
  for weights in result['routing_weights'].values():
    assert weights['st'] + weights['ts'] == pytest.approx(1.0, abs=1e-5)
  assert json.loads((tmp_path / 'a' / 'prediction.json').read_text())['top_k'] == result['top_k']
  out = capsys.readouterr().out
  assert 'Clip-level prediction' in out and 'Routing weights per body part' in out
  assert (tmp_path / 'a' / 'clip.gif').read_bytes()[:3] == b'GIF'
  assert not (tmp_path / 'a' / '.lock').exists()    # the output folder's lock is released
  # A second command writing into a folder in use is refused by name; the first one's files stay.
  before = {p.name: p.read_bytes() for p in (tmp_path / 'a').iterdir()}
  with DirectoryLock(tmp_path / 'a', what='output folder', activity='predicting'):
    with pytest.raises(DirectoryInUseError, match=f"output folder {tmp_path / 'a'} is in use by "
                                                  f'process {os.getpid()}'):
      predict.run_predict(config, workdir, str(tmp_path / 'clip.npy'), str(tmp_path / 'a'))
    with pytest.raises(DirectoryInUseError, match='output folder .* is in use'):
      export.run_export(config, workdir, str(tmp_path / 'a'))
    assert {p.name: p.read_bytes() for p in (tmp_path / 'a').iterdir()
            if p.name != '.lock'} == before
  # Nobody at all: no prediction, no crash.
  np.save(tmp_path / 'empty.npy', np.zeros((30, 22, 3), np.float32))
  [empty] = predict.run_predict(config, workdir, str(tmp_path / 'empty.npy'), str(tmp_path / 'e'),
                                verbose=False)
  assert empty['status'] == 'no person' and empty['empty_frames'] == 30


def test_export_round_trip(workdir, config, stream, tmp_path):
  manifest = export.run_export(config, workdir, str(tmp_path / 'export'))
  assert {'model.jaxexport', 'pipeline.jaxexport', 'params.npz', 'labels.json',
          'preprocessing.json', 'load_exported.py'} <= set(os.listdir(tmp_path / 'export'))
  assert 'cpu' in manifest['platforms']
  assert json.loads((tmp_path / 'export' / 'labels.json').read_text()) == \
      list(synthetic.class_names())
  settings = json.loads((tmp_path / 'export' / 'preprocessing.json').read_text())
  assert (settings['layout'], settings['num_frames']) == ('openpose22', 16)

  live = inference.Predictor.from_workdir(workdir)
  keypoints, confidence = stream
  to22 = OPENPOSE22.map_from(OPENPOSE35)
  starts = np.array([0, 100, 200, 300, 350])   # windows with and without empty frames
  windows = np.stack([keypoints[s:s + 32, to22] for s in starts])
  window_conf = np.stack([confidence[s:s + 32, to22] for s in starts])
  num_frames = np.array([32, 32, 20, 32, 9], np.int32)
  forward = jax.jit(inference.window_forward(live.graphdef, live.layout, live.aug))
  expected = forward(live.params, live.model_state, {'keypoints': windows, 'confidence': window_conf,
                                              'num_frames': num_frames})
  pipeline = export.load_exported(str(tmp_path / 'export'), 'pipeline')
  got = pipeline(windows, window_conf, num_frames)   # batch 5, L 32: both symbolic
  np.testing.assert_allclose(got['logits'], expected['logits'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got['routing_weights'], expected['routing_weights'], atol=1e-6)

  # The model artifact on eval_inputs, against the live NNX model, for two batch sizes.
  model = export.load_exported(str(tmp_path / 'export' / 'model.jaxexport'))
  inputs = jax.jit(lambda batch: augment.eval_inputs(batch, live.layout, live.aug))(
      {'keypoints': windows, 'confidence': window_conf, 'num_frames': num_frames})
  net = jax.jit(lambda p, r, *x: nnx.merge(live.graphdef, p, r)(*x))
  for b in (2, 5):
    logits, aux = net(live.params, live.model_state, inputs['keypoints'][:b], inputs['frame_mask'][:b])
    out = model(inputs['keypoints'][:b], inputs['frame_mask'][:b])
    np.testing.assert_allclose(out['logits'], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out['routing_weights'], aux['routing_weights'], atol=1e-6)

  # The standalone loader runs with the training code and Flax unimportable.
  np.savez(tmp_path / 'x.npz', kp=np.asarray(inputs['keypoints'][:3]),
           mask=np.asarray(inputs['frame_mask'][:3]))
  script = (
      'import sys\n'
      'class Block:\n'
      '  def find_spec(self, name, path=None, target=None):\n'
      '    if name.split(".")[0] in ("micro_dualnet_jax", "flax", "optax", "orbax"):\n'
      '      raise ImportError("blocked " + name)\n'
      'sys.meta_path.insert(0, Block())\n'
      f'sys.path.insert(0, {str(tmp_path / "export")!r})\n'
      'import numpy as np\n'
      'from load_exported import load_exported\n'
      f'x = np.load({str(tmp_path / "x.npz")!r})\n'
      f'out = load_exported({str(tmp_path / "export")!r})(x["kp"], x["mask"])\n'
      f'np.save({str(tmp_path / "standalone.npy")!r}, out["logits"])\n')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  subprocess.run([sys.executable, '-c', script], check=True, env=env, cwd=tmp_path, timeout=120)
  np.testing.assert_allclose(np.load(tmp_path / 'standalone.npy'), np.asarray(out['logits'][:3]),
                             rtol=1e-5, atol=1e-5)


def test_window_probabilities_equal_the_model_on_hand_sliced_frames(workdir, config, stream,
                                                                     inputs, tmp_path):
  """windows.csv against an oracle that cuts each window out of the recording by hand: frames
  [start, start + window) (the last window ends at the last frame), the frames with nobody in
  them left out, the rest in order, then the trained model on them. An off-by-one in the window
  starts, the empty-frame compaction or the last window's cut changes the probabilities."""
  keypoints, confidence = stream
  to22 = OPENPOSE22.map_from(OPENPOSE35)
  keypoints, confidence = keypoints[:, to22], confidence[:, to22]
  total = len(keypoints)
  num_classes = config.model.num_classes
  [summary] = predict.run_predict(config, workdir, str(inputs['npy']), str(tmp_path / 'out'),
                                  top_k=num_classes, smoothing=1, verbose=False)
  window, stride = summary['window'], summary['stride']
  rows = _rows(tmp_path / 'out' / 'windows.csv')
  starts = list(range(0, total - window + 1, stride))
  if starts[-1] + window < total:
    starts.append(total - window)
  assert [int(r['start_frame']) for r in rows] == starts
  assert [int(r['end_frame']) for r in rows] == [s + window - 1 for s in starts]

  predictor = inference.Predictor.from_workdir(workdir)
  names = predictor.class_names
  batch = {'keypoints': np.zeros((len(rows), window, 22, 2), np.float32),
           'confidence': np.zeros((len(rows), window, 22), np.float32),
           'num_frames': np.zeros(len(rows), np.int32)}
  for w, start in enumerate(starts):
    frames = np.arange(start, start + window)
    frames = frames[(confidence[frames] > 0).any(-1)]           # nobody there: left out
    batch['keypoints'][w, :len(frames)] = keypoints[frames]
    batch['confidence'][w, :len(frames)] = confidence[frames]
    batch['num_frames'][w] = len(frames)
    assert int(rows[w]['person_frames']) == len(frames)

  @jax.jit
  def oracle(params, rest, batch):
    model = nnx.merge(predictor.graphdef, params, rest)
    inputs = augment.eval_inputs(batch, predictor.layout, predictor.aug)
    return jax.nn.softmax(model(inputs['keypoints'], inputs['frame_mask'])[0], axis=-1)

  expected = np.asarray(oracle(predictor.params, predictor.model_state, batch))
  checked = 0
  for w, row in enumerate(rows):
    if batch['num_frames'][w] == 0:
      assert row['status'] == 'no person'
      continue
    assert row['status'] == 'ok'
    got = np.zeros(num_classes)
    for i in range(num_classes):
      got[names.index(row[f'top{i + 1}'])] = float(row[f'top{i + 1}_prob'])
    np.testing.assert_allclose(got, expected[w], atol=2e-6, err_msg=f'window {w}')
    checked += 1
  assert checked > 200 and any(0 < n < window for n in batch['num_frames'])

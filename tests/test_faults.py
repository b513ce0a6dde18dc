"""Faults and bad input: one test per fault found by probing a clean checkout, in this order.

1. Pickles: no code from a data file runs (restricted unpickler), released pickles still read.
2. A restore that fails never deletes checkpoints; missing config.json with checkpoints refused.
3. One process per work directory (the lock), and per data_dir while preparing.
4. No silent NaN: value ranges checked at read time, NaN logits never reported.
5. One-line errors for unreadable files, a data_dir that is a file, max_frames=0, disk errors.
6. SIGTERM during the final evaluation, learning_rate=inf, file names in messages, export
   checksums.

The tests marked slow share one interrupted smoke run (`interrupted`: 12 of 30 steps,
checkpoints 4, 8, 12) and copy it.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import runs
from configs import smoke
from micro_dualnet_jax import atomic, dirlock, evaluate, export, inference, predict, train
from micro_dualnet_jax.checkpoint import CHECKSUMS_KEY
from micro_dualnet_jax.data import prepare, recordings
from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.data.readers import (load_pyskl, read_list_file, read_ma52_split,
                                            read_nwucla, read_openpose_folder,
                                            read_processed_split, read_pyskl)
from micro_dualnet_jax.dirlock import DirectoryLock
from micro_dualnet_jax.errors import (CheckpointReadError, DirectoryInUseError, OutputWriteError,
                                      TrainingError)
from micro_dualnet_jax.models import MicroDualNet
from micro_dualnet_jax.rundir import RunDir, RunDirError
from micro_dualnet_jax.config import PredictOptions
from support import smoke_config, typed

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOST = socket.gethostname()
TIMEOUT_S = 300   # hang protection only


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*'))
          if p.is_file()}


def main_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """python main.py args (one host device), output captured."""
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=TIMEOUT_S, check=False,
                        env={**os.environ, 'XLA_FLAGS': '', **(env or {})})


def one_line_error(done: subprocess.CompletedProcess) -> str:
  assert done.returncode == 2, done.stdout + done.stderr
  assert done.stderr.startswith('error: ') and done.stderr.count('\n') == 1, done.stderr
  assert 'Traceback' not in done.stdout + done.stderr
  return done.stderr


# ============================================================================ 1. pickles


class _Payload:
  """Unpickling it calls `function(*args)`; the malicious pickles embed it in valid data."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


def _payloads(marker: pathlib.Path):
  """Ways a pickle runs code: a shell command, Python source, and a numpy function outside the
  allowed reconstruction functions (writing a file)."""
  return {
      'os.system': _Payload(os.system, f'touch {marker}'),
      'exec': _Payload(exec, f'open({str(marker)!r}, "w").close()'),
      'numpy.save': _Payload(np.save, str(marker), np.zeros(1)),
  }


def _pyskl_clip(frame_dir: str, label: int = 0, frames: int = 3, layout_joints: int = 17):
  rng = np.random.default_rng(0)
  return {'frame_dir': frame_dir, 'label': label, 'total_frames': frames,
          'keypoint': rng.uniform(0, 100, (1, frames, layout_joints, 2)).astype(np.float32),
          'keypoint_score': np.full((1, frames, layout_joints), 0.9, np.float32)}


@pytest.mark.parametrize('payload', ['os.system', 'exec', 'numpy.save'])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, payload):
  marker = tmp_path / 'marker'
  attack = _payloads(marker)[payload]
  refused = {'os.system': 'posix.system', 'exec': 'builtins.exec',
             'numpy.save': 'numpy.save'}[payload]
  # The stealthy form: the payload inside otherwise valid data, so that loading it would
  # return the clips (and prepare would exit 0) after running it.
  clips = [_pyskl_clip('a'), {**_pyskl_clip('b'), 'img_shape': attack}]
  files = {
      'pyskl': tmp_path / 'clips.pkl',
      'ma52': tmp_path / 'ma52' / 'MA52_train.pkl',
      'imigue': tmp_path / 'imigue' / 'train_label.pkl',
  }
  for path in files.values():
    path.parent.mkdir(exist_ok=True)
  with open(files['pyskl'], 'wb') as f:
    pickle.dump(clips, f)
  with open(files['ma52'], 'wb') as f:
    pickle.dump([{**_pyskl_clip('x', layout_joints=28), 'keypoint_score': attack}], f)
  (tmp_path / 'ma52' / 'train_list_videos.txt').write_text('x.mp4 0\n')
  np.save(tmp_path / 'imigue' / 'train_data.npy', np.ones((1, 3, 4, 22, 1), np.float32))
  with open(files['imigue'], 'wb') as f:
    pickle.dump((['clip_0'], [attack]), f)
  readers = {
      'pyskl': lambda: read_pyskl(files['pyskl'], layout='coco17'),
      'ma52': lambda: read_ma52_split(tmp_path / 'ma52', 'train'),
      'imigue': lambda: read_processed_split(tmp_path / 'imigue', 'train'),
      'predict': lambda: recordings.load_recordings(files['pyskl'], 'coco17'),
  }
  for name, read in readers.items():
    path = files.get(name, files['pyskl'])
    with pytest.raises(DataFormatError) as error:
      read()
    assert str(error.value).startswith(f'{path}: refused to unpickle {refused}: '), \
        str(error.value)
    assert '\n' not in str(error.value)
  assert not marker.exists()


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_released_pickles_read_at_every_protocol(tmp_path, protocol):
  """What the formats hold (numpy arrays of every dtype used, numpy scalars, tuples, sets,
  bytes) loads at every protocol; the clips equal the objects pickled."""
  clips = [_pyskl_clip('a', label=1), {**_pyskl_clip('b', label=2),
                                       'label': np.int64(2), 'total_frames': np.int32(3),
                                       'img_shape': (1080, 1920), 'tags': {'x', b'y'},
                                       'keypoint_score': np.full((1, 3, 17), 0.5, np.float16)}]
  data = {'split': {'train': ['b', 'a']}, 'annotations': clips}
  path = tmp_path / 'data.pkl'
  with open(path, 'wb') as f:
    pickle.dump(data, f, protocol=protocol)
  split, annotations = load_pyskl(path)
  assert split == {'train': ['b', 'a']} and annotations[1]['tags'] == {'x', b'y'}
  got = read_pyskl(path, layout='coco17', split='train', num_classes=3)
  assert [(c.clip_id, c.label) for c in got] == [('b', 2), ('a', 1)]
  np.testing.assert_array_equal(got[1].keypoints, clips[0]['keypoint'][0])
  np.testing.assert_array_equal(got[0].confidence, np.full((3, 17), 0.5, np.float32))
  labels = tmp_path / 'train_label.pkl'
  with open(labels, 'wb') as f:
    pickle.dump((['v_0'], [np.int64(4)]), f, protocol=protocol)
  np.save(tmp_path / 'train_data.npy', np.full((1, 3, 2, 22, 1), 0.5, np.float32))
  [clip] = read_processed_split(tmp_path, 'train')
  assert (clip.clip_id, clip.label, clip.num_frames) == ('v_0', 4, 2)


# ============================================================================ 2. restore

STEPS, STOP = 30, 12
# The fixture's command (a rerun of it rewrites config.json with the same bytes).
RUN_ARGS = (f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1',
            f'--config.max_steps_per_run={STOP}')


def _config(data_dir: str, **overrides):
  return smoke_config(data_dir, **{'num_train_steps': STEPS, 'log_every_steps': 1,
                                   'max_steps_per_run': STOP, **overrides})


@pytest.fixture(scope='module')
def interrupted(data_dir, tmp_path_factory):
  """A smoke run stopped after 12 of 30 steps: checkpoints 4, 8 and 12, no outputs."""
  workdir = tmp_path_factory.mktemp('interrupted') / 'run'
  assert train.train_and_evaluate(_config(data_dir), str(workdir)) == \
      {'interrupted_at_step': STOP}
  assert RunDir(str(workdir)).checkpoint_steps() == [4, 8, 12]
  return workdir


@pytest.fixture
def run_copy(interrupted, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(interrupted, workdir)
  return workdir


@pytest.mark.slow
def test_a_rerun_with_jax_enable_x64_is_refused_and_deletes_nothing(run_copy, data_dir):
  before = snapshot(run_copy)
  done = main_py('--config=configs/smoke.py', f'--workdir={run_copy}',
                 f'--config.data.data_dir={data_dir}', *RUN_ARGS,
                 env={'JAX_ENABLE_X64': '1'})
  message = one_line_error(done)
  assert message.startswith('error: none of the checkpoints could be restored, so the run did '
                            'not start and nothing was deleted: '), message
  for step in (12, 8, 4):
    assert re.search(rf'{run_copy}/checkpoints/{step} \(\w+', message), message
  assert 'JAX_ENABLE_X64' in message
  assert snapshot(run_copy) == before


@pytest.mark.slow
def test_checkpoints_without_config_json_are_refused_not_trained_over(run_copy, data_dir):
  (run_copy / 'config.json').unlink()
  before = snapshot(run_copy)
  with pytest.raises(RunDirError, match=r'config\.json is missing, but .* holds checkpoints'):
    train.train_and_evaluate(_config(data_dir, **{'model.width': 24}), str(run_copy))
  assert snapshot(run_copy) == before
  # Without run.json (and metrics.jsonl) as well, it is not taken for an empty directory either.
  (run_copy / 'run.json').unlink()
  (run_copy / 'metrics.jsonl').unlink()
  with pytest.raises(RunDirError, match='is not empty and holds no run'):
    train.train_and_evaluate(_config(data_dir), str(run_copy))
  assert RunDir(str(run_copy)).checkpoint_steps() == [4, 8, 12]


def _break_checksum(workdir: pathlib.Path, step: int) -> None:
  meta_file = workdir / 'checkpoints' / str(step) / 'meta' / 'metadata'
  saved = json.loads(meta_file.read_text())
  saved[CHECKSUMS_KEY]['params'] = '0' * len(saved[CHECKSUMS_KEY]['params'])
  meta_file.write_text(json.dumps(saved))


@pytest.mark.slow
def test_no_restorable_checkpoint_stops_the_run_and_names_each(run_copy, data_dir):
  for step in (4, 8, 12):
    _break_checksum(run_copy, step)
  before = snapshot(run_copy)
  with pytest.raises(CheckpointReadError) as error:   # under a changed config: kept as it was
    train.train_and_evaluate(_config(data_dir, max_steps_per_run=1), str(run_copy))
  for step in (12, 8, 4):
    assert (f'{run_copy}/checkpoints/{step} (ValueError: params checksum ' in str(error.value))
  assert snapshot(run_copy) == before   # checkpoints, metrics.jsonl and config.json untouched


@pytest.mark.slow
def test_rollback_past_an_unreadable_checkpoint_still_works(run_copy, data_dir, capsys):
  """A checkpoint that does not restore while an older one does: the run restarts from the
  older one and the newer one (restored past) is deleted, as before."""
  _break_checksum(run_copy, 12)
  result = train.train_and_evaluate(_config(data_dir, max_steps_per_run=1), str(run_copy))
  assert result == {'interrupted_at_step': 9}
  out = capsys.readouterr().out
  assert 'WARNING: checkpoint at step 12' in out and 'Resuming from checkpoint at step 8' in out
  assert RunDir(str(run_copy)).checkpoint_steps() == [4, 8, 9]
  # The config replaced is recorded against the step the run resumed from, not the newest.
  assert [(r['trained_steps'], r['changes']) for r in RunDir(str(run_copy)).config_history()] \
      == [(8, ['max_steps_per_run: 12 -> 1'])]


# ============================================================================ 3. one process


def _fresh_run_dir(path: pathlib.Path, config) -> RunDir:
  run = RunDir(str(path))
  run.write(config, kind='run', seeds=[0], package_version='test',
            class_names=config.data.class_names)
  return run


def test_a_locked_work_directory_is_refused_naming_the_holder(tmp_path):
  config = smoke_config(str(tmp_path / 'tfds'))
  workdir = tmp_path / 'run'
  _fresh_run_dir(workdir, config)
  holder = DirectoryLock(workdir, activity='training')
  holder.acquire()
  try:
    before = snapshot(workdir)
    with pytest.raises(DirectoryInUseError) as error:
      train.train_and_evaluate(config, str(workdir))
    message = str(error.value)
    assert message.startswith(f'work directory {workdir} is in use by process {os.getpid()} on '
                              f'host {HOST} (training since '), message
    assert snapshot(workdir) == before
    # An evaluation writing into the directory is refused too; one writing elsewhere is not.
    with pytest.raises(DirectoryInUseError, match=f'in use by process {os.getpid()}'):
      evaluate.evaluate_workdir(str(workdir))
    with pytest.raises(RunDirError, match='no checkpoint'):
      evaluate.evaluate_workdir(str(workdir), output_dir=str(tmp_path / 'elsewhere'))
    assert not (tmp_path / 'elsewhere').exists()   # created for the outputs, none written
  finally:
    holder.release()
  assert not (workdir / '.lock').exists()


def test_an_output_folder_is_written_by_one_command_at_a_time(tmp_path):
  """dirlock.output_folder, what predict, export and ensemble write under: the folder is created
  and locked for the block, released after it, removed again when the block left it empty."""
  out = tmp_path / 'nested' / 'out'
  with dirlock.output_folder(out, 'predicting'):
    assert json.loads((out / '.lock').read_text())['activity'] == 'predicting'
    with pytest.raises(DirectoryInUseError) as error:
      with dirlock.output_folder(out, 'exporting'):
        (out / 'second.json').write_text('{}')   # never reached
    assert str(error.value).startswith(f'output folder {out} is in use by process '
                                       f'{os.getpid()} on host {HOST} (predicting since ')
  assert not (tmp_path / 'nested').exists()        # a refused block left nothing behind
  with dirlock.output_folder(out, 'predicting'):
    (out / 'summary.json').write_text('{}')
  assert sorted(os.listdir(out)) == ['summary.json']
  with pytest.raises(ValueError, match='a bug'):  # a bug in the block keeps its traceback
    with dirlock.output_folder(out, 'predicting'):
      raise ValueError('a bug')
  assert sorted(os.listdir(out)) == ['summary.json']


def test_a_seed_folder_is_covered_by_its_runs_lock(tmp_path):
  config = smoke_config(str(tmp_path / 'tfds'))
  run = RunDir(str(tmp_path / 'seeds'))
  run.write(config, kind='seeds', seeds=[3, 4], package_version='test',
            class_names=config.data.class_names)
  assert RunDir(run.file('seed_3')).lock_dir() == run.path
  assert RunDir(run.file('seed_5')).lock_dir() == run.file('seed_5')   # not one of its seeds
  assert run.lock_dir() == run.path


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_note(tmp_path, capsys):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  (tmp_path / '.lock').write_text(json.dumps(
      {'pid': dead.pid, 'host': HOST, 'since': '2026-01-01 00:00:00 +0000',
       'activity': 'training'}) + '\n')
  lock = DirectoryLock(tmp_path, activity='evaluating')
  lock.acquire()
  assert (f'note: taking over the lock of {tmp_path} left by process {dead.pid} on host {HOST} '
          '(training since 2026-01-01 00:00:00 +0000), which is no longer running'
          in capsys.readouterr().out)
  record = json.loads((tmp_path / '.lock').read_text())
  assert (record['pid'], record['host'], record['activity']) == (os.getpid(), HOST, 'evaluating')
  lock.release()
  assert not (tmp_path / '.lock').exists()


def test_two_prepares_of_one_data_dir_take_turns(tmp_path, monkeypatch, capsys):
  data_dir = str(tmp_path / 'tfds')
  os.makedirs(data_dir)
  first = DirectoryLock(data_dir, name=prepare.PREPARE_LOCK_FILE, what='data_dir',
                        activity='preparing datasets')
  first.acquire()
  waited = []
  note = prepare._note_waiting  # pylint: disable=protected-access

  def first_finishes(holder):   # the second waits; the first then ends
    waited.append(holder)
    note(holder)
    first.release()

  monkeypatch.setattr(prepare, '_note_waiting', first_finishes)
  options = smoke.get_config().data.options.to_dict()
  stats = prepare.prepare_dataset('synthetic', None, data_dir, **options)
  assert [s['clips'] for s in stats] == [options['num_train'], options['num_test']]
  assert [h.pid for h in waited] == [os.getpid()]
  assert (f'note: waiting for process {os.getpid()} on host {HOST} (preparing datasets since '
          in capsys.readouterr().out)
  assert not os.path.exists(os.path.join(data_dir, prepare.PREPARE_LOCK_FILE))


@pytest.mark.slow
def test_a_second_process_on_a_training_work_directory_exits_2_naming_the_first(
    run_copy, data_dir, tmp_path, capsys):
  first = runs.Run(['--config=configs/smoke.py', f'--workdir={run_copy}',
                    f'--config.data.data_dir={data_dir}', *RUN_ARGS[:2]],
                   tmp_path / 'first.log', devices=1, pause_at=('step', STOP + 1))
  try:
    first.wait_paused('step', STOP + 1)
    second = main_py('--config=configs/smoke.py', f'--workdir={run_copy}',
                     f'--config.data.data_dir={data_dir}', *RUN_ARGS[:2])
    message = one_line_error(second)
    assert message.startswith(f'error: work directory {run_copy} is in use by process '
                              f'{first.proc.pid} on host {HOST} (training since '), message
    assert 'Resuming' not in second.stdout
  finally:
    first.kill()
  # The killed run's lock file is free: the next run takes it over.
  capsys.readouterr()
  lock = RunDir(str(run_copy)).lock('evaluating')
  lock.acquire()
  lock.release()
  assert (f'note: taking over the lock of {run_copy} left by process {first.proc.pid} on host '
          f'{HOST} (training since ' in capsys.readouterr().out)
  assert RunDir(str(run_copy)).checkpoint_steps() == [4, 8, 12]


# ============================================================================ 4. no silent NaN


def _write_npy(path: pathlib.Path, frames: int = 20) -> np.ndarray:
  rng = np.random.default_rng(1)
  array = np.concatenate([rng.uniform(100, 500, (frames, 22, 2)),
                          np.full((frames, 22, 1), 0.8)], -1).astype(np.float32)
  np.save(path, array)
  return array


@pytest.mark.parametrize('frame, joint, channel, value, message', [
    (7, 3, 0, 1e30, 'coordinate 1e+30 at frame 7, joint 3, channel 0 is beyond +-1e+06 '
                    '(pixels or metres expected; a corrupt value?)'),
    (2, 5, 1, -2e6, 'coordinate -2e+06 at frame 2, joint 5, channel 1 is beyond +-1e+06 '
                    '(pixels or metres expected; a corrupt value?)'),
    (4, 1, 2, 1e6, 'confidence 1e+06 at frame 4, joint 1 is outside [0, 1]'),
    (0, 0, 2, -0.5, 'confidence -0.5 at frame 0, joint 0 is outside [0, 1]'),
])
def test_out_of_range_input_values_are_refused_at_read_time(tmp_path, frame, joint, channel,
                                                            value, message):
  array = _write_npy(tmp_path / 'take.npy')
  array[frame, joint, channel] = value
  np.save(tmp_path / 'take.npy', array)
  with pytest.raises(DataFormatError) as error:
    recordings.load_recordings(tmp_path / 'take.npy', 'openpose22')
  assert str(error.value) == f"{tmp_path / 'take.npy'} (clip 'take'): {message}"


def test_in_range_values_and_nan_at_missing_joints_are_accepted(tmp_path):
  array = _write_npy(tmp_path / 'take.npy')
  array[0, 0, :2] = 1e6                      # the bound itself
  array[1, 1, 2] = 1.05                      # a detector's score just above 1
  array[2, 2] = [np.nan, np.nan, 0.0]        # a missing joint: its coordinates are ignored
  np.save(tmp_path / 'take.npy', array)
  [clip] = recordings.load_recordings(tmp_path / 'take.npy', 'openpose22')
  assert clip.keypoints[0, 0, 0] == 1e6 and clip.confidence[1, 1] == np.float32(1.05)
  assert (clip.keypoints[2, 2] == 0).all() and clip.confidence[2, 2] == 0


def _nan_predictor() -> inference.Predictor:
  """The smoke model with NaN parameters: every window's logits are NaN."""
  config = typed(smoke.get_config())
  model = MicroDualNet(config.model, rngs=nnx.Rngs(params=0))
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
  return inference.Predictor(inference.RestoredModel(graphdef, params, rest, 7, config,
                                                     'latest', config.data.class_names),
                             batch_size=8)


def test_nan_logits_are_never_reported_as_a_prediction(tmp_path):
  predictor = _nan_predictor()
  array = _write_npy(tmp_path / 'long.npy', frames=100)
  [clip] = recordings.load_recordings(tmp_path / 'long.npy', 'openpose22')
  options = PredictOptions(render=False).resolved(predictor.config.model.num_frames,
                                                 predictor.config.data.max_frames)
  out = tmp_path / 'out'
  with pytest.raises(inference.NonFiniteOutputError) as error:
    predict.predict_clip(predictor, clip, options, out, verbose=False)
  assert str(error.value).startswith(
      f"{tmp_path / 'long.npy'}: the model (checkpoint step 7) gave NaN or inf outputs for ")
  assert not out.exists()                     # no summary.json counting a NaN window
  with pytest.raises(inference.NonFiniteOutputError):
    predictor.predict(array[:10])


# ============================================================================ 5. one-line errors


def test_a_folder_or_symlink_loop_in_place_of_a_json_file_is_named(tmp_path):
  sqe = tmp_path / 'nwucla' / 'all_sqe'
  sqe.mkdir(parents=True)
  (sqe / 'a01_s01_e00_v01.json').mkdir()
  with pytest.raises(DataFormatError, match=r'a01_s01_e00_v01\.json: is a folder, expected a '
                                            r'JSON file$'):
    read_nwucla(tmp_path / 'nwucla', 'train')
  openpose = tmp_path / 'openpose'
  openpose.mkdir()
  loop = openpose / 'v_000000000000_keypoints.json'
  loop.symlink_to(loop)
  with pytest.raises(DataFormatError, match=r'v_000000000000_keypoints\.json: cannot read the '
                                            r'JSON file: Too many levels of symbolic links$'):
    read_openpose_folder(openpose)


def test_a_data_dir_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
  a_file = tmp_path / 'passwd'
  a_file.write_text('root:x:0:0\n')
  with pytest.raises(ValueError, match=f"data.data_dir '{a_file}' is a file, not a folder"):
    prepare.prepare_dataset('synthetic', None, str(a_file))
  with pytest.raises(ValueError, match='is a file, not a folder'):
    train.train_and_evaluate(smoke_config(str(a_file)), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('key, value, message', [
    ('data.max_frames', 0, 'invalid data config: max_frames must be a positive integer, got 0'),
    ('optim.learning_rate', float('inf'),
     'invalid optim config: learning_rate must be a number > 0, got inf'),
    ('optim.weight_decay', float('inf'),
     'invalid optim config: weight_decay must be a number >= 0, got inf'),
])
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, key, value,
                                                                  message):
  with pytest.raises(ValueError) as error:
    train.train_and_evaluate(smoke_config(str(tmp_path / 'tfds'), **{key: value}),
                             str(tmp_path / 'run'))
  assert str(error.value) == message
  assert not (tmp_path / 'run').exists()


def test_an_interrupted_write_leaves_no_partial_file(tmp_path):
  target = tmp_path / 'eval_outputs.npz'
  with pytest.raises(OutputWriteError) as error:
    with atomic.atomic_path(target) as temporary:
      with open(temporary, 'wb') as f:
        f.write(b'PK')                       # some bytes, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  assert str(error.value) == (f'writing {target} failed (No space left on device); the file is '
                              'as it was before')
  assert os.listdir(tmp_path) == []          # neither a 0-byte result nor the temporary
  target.write_bytes(b'old')
  with pytest.raises(OutputWriteError):
    with atomic.atomic_path(target) as temporary:
      pathlib.Path(temporary).write_bytes(b'new, half')
      raise OSError(errno.EROFS, os.strerror(errno.EROFS))
  assert os.listdir(tmp_path) == ['eval_outputs.npz'] and target.read_bytes() == b'old'


@pytest.mark.slow
def test_a_failed_metrics_append_names_the_file_and_the_last_checkpoint(run_copy, data_dir):
  metrics = run_copy / 'metrics.jsonl'

  def unwritable_log(event, step):   # the file cannot be appended to from step 14 on
    if (event, step) == ('step', STOP + 1):
      metrics.unlink()
      metrics.mkdir()

  with pytest.raises(TrainingError) as error:
    train.train_and_evaluate(_config(data_dir, max_steps_per_run=0), str(run_copy),
                             hooks=(unwritable_log,))
  assert str(error.value) == (
      f'appending to {metrics} failed (Is a directory). The checkpoints are intact (latest: '
      'step 12). Free disk space or fix the directory, then run the same command again to '
      'resume.')


@pytest.mark.slow
def test_a_failed_final_output_names_the_file_and_the_run_resumes_to_write_it(run_copy,
                                                                              data_dir):
  config = _config(data_dir, num_train_steps=STOP)   # finished training: outputs still to write
  predictions = run_copy / 'predictions.csv'
  predictions.mkdir()                                 # the first output cannot be written
  with pytest.raises(TrainingError) as error:
    train.train_and_evaluate(config, str(run_copy))
  assert str(error.value).startswith(f'writing {predictions} failed (Is a directory); ')
  assert str(error.value).endswith('The checkpoints are intact (latest: step 12). Free disk '
                                   'space or fix the directory, then run the same command '
                                   'again to resume.')
  leftovers = [p.name for p in run_copy.iterdir() if '.tmp' in p.name]
  assert leftovers == [] and not (run_copy / 'summary.json').exists()
  predictions.rmdir()
  summary = train.train_and_evaluate(config, str(run_copy))
  assert summary['step'] == STOP and (run_copy / 'summary.json').is_file()
  assert predictions.stat().st_size > 0


# ============================================================================ 6. smaller


def test_a_non_utf8_list_file_is_named(tmp_path):
  path = tmp_path / 'train_list_videos.txt'
  path.write_bytes(b'a.mp4 0\r\nb\xff.mp4 1\r\n')
  with pytest.raises(DataFormatError) as error:
    read_list_file(path)
  assert str(error.value) == f"{path}: not a UTF-8 text list file (byte 10 is b'\\xff')"


def test_a_signal_before_the_first_step_stops_without_compiling_it(tmp_path, monkeypatch):
  config = smoke_config(str(tmp_path / 'tfds'))
  load_splits = train.datasets.load_splits

  def signalled_while_loading(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)     # lands on the run's handler, not the default one
    return load_splits(*args, **kwargs)

  def no_step(*args, **kwargs):
    del args, kwargs
    return lambda *batch: pytest.fail('a training step ran')

  monkeypatch.setattr(train.datasets, 'load_splits', signalled_while_loading)
  monkeypatch.setattr(train.steps, 'make_train_step', no_step)
  before = signal.getsignal(signal.SIGTERM)
  assert train.train_and_evaluate(config, str(tmp_path / 'run')) == {'interrupted_at_step': 0,
                                                                      'signal': 'SIGTERM'}
  assert signal.getsignal(signal.SIGTERM) == before   # the run's handler is removed after it


@pytest.mark.slow
def test_sigterm_during_the_final_evaluation_finishes_the_outputs_and_exits_0(
    run_copy, data_dir, tmp_path):
  run = runs.Run(['--config=configs/smoke.py', f'--workdir={run_copy}',
                  f'--config.data.data_dir={data_dir}', f'--config.num_train_steps={STOP}',
                  '--config.log_every_steps=1'], tmp_path / 'final.log', devices=1,
                 pause_at=('final_eval', STOP))
  run.wait_paused('final_eval', STOP)
  run.signal(signal.SIGTERM)
  run.release()
  out = run.finish(returncode=0)
  assert 'Received signal 15 during the final evaluation: writing its outputs' in out
  assert json.loads((run_copy / 'summary.json').read_text())['step'] == STOP


@pytest.mark.slow
def test_the_export_loader_refuses_changed_weights_or_labels(interrupted, tmp_path):
  folder = tmp_path / 'export'
  manifest = export.export_workdir(None, str(interrupted), str(folder))
  assert set(manifest['sha256']) == {'model.jaxexport', 'pipeline.jaxexport', 'params.npz',
                                     'labels.json', 'preprocessing.json'}
  export.load_exported(str(folder))           # as exported: loads
  params = folder / 'params.npz'
  original = params.read_bytes()
  with np.load(params) as data:
    weights = {k: data[k] for k in data.files}
  weights['p0000'] = weights['p0000'] + 1e-3
  np.savez(params, **weights)
  with pytest.raises(ValueError, match=rf'^{params}: sha256 \w+ differs from the '
                                       rf'{manifest["sha256"]["params.npz"]} in manifest.json'):
    export.load_exported(str(folder), 'pipeline')
  params.write_bytes(original)
  labels = folder / 'labels.json'
  names = json.loads(labels.read_text())
  labels.write_text(json.dumps(names[1:] + names[:1], indent=2))
  with pytest.raises(ValueError, match=rf'^{labels}: sha256 .* the file was changed after '
                                       'export; export the model again$'):
    export.load_exported(str(folder))

"""The run lifecycle through main.py and the public entry points: a finished run rerun, every
refused command leaving the work directory as it was, evaluation of a run from its own
config.json, and the challenge submissions of unlabelled test splits."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from configs import ma52 as ma52_config
from configs import imigue as imigue_config
from configs import smoke
from support import typed
from micro_dualnet_jax import evaluate, train
from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.rundir import RunDirError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300   # hang protection only


def main_py(*args: str) -> subprocess.CompletedProcess:
  """python main.py args (one host device), output captured; killed after TIMEOUT_S."""
  env = {**os.environ, 'XLA_FLAGS': ''}
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=TIMEOUT_S, check=False)


def snapshot(folder: pathlib.Path) -> dict[str, bytes] | None:
  """Every file under `folder` with its bytes (None when the folder does not exist)."""
  if not folder.exists():
    return None
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*'))
          if p.is_file()}


@pytest.fixture(scope='module')
def finished(data_dir, tmp_path_factory):
  """A finished smoke run made by main.py."""
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  done = main_py('--config=configs/smoke.py', f'--workdir={workdir}',
                 f'--config.data.data_dir={data_dir}')
  assert done.returncode == 0, done.stdout + done.stderr
  return workdir


def test_a_finished_run_holds_every_output(finished):
  """The work directory of `python main.py --config=configs/smoke.py` (docs/workdir.md)."""
  for name in ('run.json', 'config.json', 'metrics.jsonl', 'summary.json', 'predictions.csv',
               'eval_metrics.json', 'eval_outputs.npz', 'training_curves.png',
               'confusion_matrix.png', 'routing_weights.png'):
    assert (finished / name).stat().st_size > 0, name
  summary = json.loads((finished / 'summary.json').read_text())
  assert summary['step'] == 8 and 0.0 <= summary['final']['top1'] <= 100.0
  lines = [json.loads(l) for l in (finished / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'train_loss' in l] == [2, 4, 6, 8]
  assert all(np.isfinite(l['train_loss']) for l in lines if 'train_loss' in l)
  predictions = (finished / 'predictions.csv').read_text().splitlines()
  assert len(predictions) == 1 + 24      # header + every test clip exactly once
  with np.load(finished / 'eval_outputs.npz') as outputs:   # what --mode=ensemble reads
    assert outputs['logits'].shape == (24, 15)
    assert list(outputs['clip_ids']) == [l.split(',')[0] for l in predictions[1:]]
  assert sorted(os.listdir(finished / 'checkpoints')) == ['4', '8']
  try:   # TensorBoard event files only when the optional writer package is installed
    import tensorboardX  # pylint: disable=g-import-not-at-top,unused-import
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(finished / 'tensorboard'))
  except ImportError:
    assert not (finished / 'tensorboard').exists()


def test_rerun_of_a_finished_run_prints_its_summary_and_exits_0(finished, data_dir):
  before = snapshot(finished)
  again = main_py('--config=configs/smoke.py', f'--workdir={finished}',
                  f'--config.data.data_dir={data_dir}')
  assert again.returncode == 0, again.stderr
  assert 'already holds this run, finished at step 8' in again.stdout
  assert snapshot(finished) == before           # metrics.jsonl included: no line appended


@pytest.mark.slow   # fast: tests/test_loop.py::test_a_raised_step_budget_trains_on_...
def test_a_raised_step_budget_trains_on_from_the_last_checkpoint(finished, data_dir):
  longer = finished.parent / 'longer'
  shutil.copytree(finished, longer)
  more = main_py('--config=configs/smoke.py', f'--workdir={longer}',
                 f'--config.data.data_dir={data_dir}', '--config.num_train_steps=10')
  assert more.returncode == 0, more.stderr
  assert 'Resuming from checkpoint at step 8' in more.stdout
  steps_logged = [line for line in (longer / 'metrics.jsonl').read_text().splitlines()
                  if '"train_loss"' in line]
  assert len(steps_logged) == 5                  # 2, 4, 6, 8, 10: one record per step


@pytest.mark.parametrize('args, message', [
    (['--config.model.width=24'], 'model.width: 16 in the work directory, 24 now'),
    (['--config.model.width=-3'], 'invalid model config: width must be a positive integer, '
                                  'got -3'),
    (['--config.model.widht=3'], '--config: .*widht'),
    # The same path as width=-3 (the config checks); the messages: test_train.py::
    # test_each_bad_config_value_is_named.
    pytest.param(['--config.optim.learning_rate=-1.0'], 'invalid optim config: learning_rate '
                 'must be a number > 0, got -1.0', marks=pytest.mark.slow),
    (['--config.num_seeds=2'], r'holds a run of seeds \[0\]; this config trains seeds \[0, 1\]'),
    pytest.param(['--config.test_time.num_clips=0'], 'num_clips must be a positive integer, '
                 'got 0', marks=pytest.mark.slow),
    (['--config.augment.stream=bone'], "augment.stream: 'joint' in the work directory, 'bone'"),
    (['--config.best_metric=top5'], "best_metric 'top1', this config by 'top5'"),
])
def test_a_refused_command_leaves_the_work_directory_as_it_was(finished, data_dir, args,
                                                               message):
  before = snapshot(finished)
  refused = main_py('--config=configs/smoke.py', f'--workdir={finished}',
                    f'--config.data.data_dir={data_dir}', *args)
  assert refused.returncode == 2, refused.stdout + refused.stderr
  assert refused.stderr.count('\n') == 1 and refused.stderr.startswith('error: '), \
      refused.stderr
  assert re.search(message, refused.stderr), refused.stderr
  assert 'Traceback' not in refused.stderr + refused.stdout
  assert snapshot(finished) == before


@pytest.mark.parametrize('args, message', [
    (['--config=configs/smok.py'], '--config: .*configs/smok.py'),
    pytest.param(['--config=configs/smoke.py', '--config.model.widht=3'], '--config: .*widht',
                 marks=pytest.mark.slow),   # fast: the same flag error in the test above
    (['--config=configs/smoke.py', '--config.batch_size=0'],
     'invalid run config: batch_size must be a positive integer, got 0'),
    (['--config=configs/smoke.py', '--config.optim.learning_rate=inf'],
     'invalid optim config: learning_rate must be a number > 0, got inf'),
    (['--config=configs/smoke.py', '--config.data.max_frames=0'],
     'invalid data config: max_frames must be a positive integer, got 0'),
    (['--config=configs/imigue.py', '--config.data.manual_dir=/nonexistent/imigue'],
     '/nonexistent/imigue'),
    (['--mode=eval'], 'does not exist'),
    (['--mode=predict', '--input=x.npy'], 'does not exist'),
    (['--mode=export'], 'does not exist'),
])
def test_a_refused_command_creates_no_work_directory(tmp_path, data_dir, args, message):
  workdir = tmp_path / 'new' / 'run'
  data = [f'--config.data.data_dir={data_dir}'] if args[0].startswith('--config=') else []
  refused = main_py(*args, *data, f'--workdir={workdir}')
  assert refused.returncode == 2, refused.stdout + refused.stderr
  assert re.search(message, refused.stderr), refused.stderr
  assert refused.stderr.startswith('error: ') and 'Traceback' not in refused.stderr
  if 'manual_dir' not in ' '.join(args):     # a missing dataset adds where to get it
    assert refused.stderr.count('\n') == 1, refused.stderr
  assert not (tmp_path / 'new').exists()


@pytest.mark.slow
def test_a_budget_below_the_checkpoints_is_refused(data_dir, tmp_path):
  config = smoke.get_config()
  config.data.data_dir = data_dir
  config.max_steps_per_run = 8              # stopped after step 8 of 8: checkpoints 4 and 8
  config.num_train_steps = 12
  assert train.train_and_evaluate(typed(config), str(tmp_path)) == {'interrupted_at_step': 8}
  before = snapshot(tmp_path)
  config.num_train_steps = 6
  with pytest.raises(RunDirError, match='holds checkpoints up to step 8, beyond this config.s 6'):
    train.train_and_evaluate(typed(config), str(tmp_path))
  assert snapshot(tmp_path) == before


def test_eval_batch_size_is_refused_before_step_1(finished, data_dir, tmp_path):
  config = smoke.get_config()
  config.data.data_dir = data_dir
  config.eval_batch_size = 12                 # the tests run on 8 host devices
  with pytest.raises(ValueError, match='eval_batch_size 12 is not divisible by the 8 devices'):
    train.train_and_evaluate(typed(config), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
  before = snapshot(finished)
  config.num_train_steps = 10                 # a budget that would train on
  with pytest.raises(ValueError, match='eval_batch_size 12 is not divisible by the 8 devices'):
    train.train_and_evaluate(typed(config), str(finished))
  assert snapshot(finished) == before


@pytest.mark.parametrize('config', [[], ['--config=configs/smoke.py',
                                            '--config.model.velocity_scale=1.0']])
def test_eval_reads_the_runs_own_config(finished, tmp_path, config):
  """--mode=eval without --config: the model and data come from config.json; a --config with
  another model (here one that keeps every parameter shape) is noted and ignored."""
  done = main_py('--mode=eval', f'--workdir={finished}', '--checkpoint=latest',
                 f'--output={tmp_path / "eval"}', *config)
  assert done.returncode == 0, done.stderr
  summary = json.loads((finished / 'summary.json').read_text())
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result['step'] == 8 and result['top1'] == pytest.approx(summary['final']['top1'])
  assert ('model.velocity_scale' in done.stdout and 'ignored' in done.stdout) == bool(config)


# ----------------------------------------------------------------------------- submissions


def _openpose28_clips(n: int, seed: int) -> list:
  return synthetic.generate_split('test', num_clips=n, seed=seed, layout='openpose28')


def write_ma52_release(root: pathlib.Path, splits: dict[str, list[str]]) -> None:
  """MA-52 as released: `<split>_list_videos.txt` ('<name>.mp4 <label>', CRLF) and
  `MA52_<split>.pkl` (a bare PYSKL list), skeletons in another order than the list."""
  root.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for prefix, names in splits.items():
    labels = [0] * len(names) if prefix == 'test' else list(rng.integers(0, 52, len(names)))
    (root / f'{prefix}_list_videos.txt').write_bytes(
        '\r\n'.join(f'{n}.mp4 {label}' for n, label in zip(names, labels)).encode())
    clips = _openpose28_clips(len(names), seed=len(prefix))
    annotations = [{'frame_dir': n, 'label': int(label), 'total_frames': clip.num_frames,
                    'img_shape': (1080, 1920), 'keypoint': clip.keypoints[None],
                    'keypoint_score': clip.confidence[None]}
                   for n, label, clip in zip(names, labels, clips)]
    with open(root / f'MA52_{prefix}.pkl', 'wb') as f:
      pickle.dump(annotations[::-1], f)


def _tiny(config, manual_dir, data_dir):
  config.data.manual_dir = str(manual_dir)
  config.data.data_dir = data_dir
  config.data.max_frames = 48
  for key, value in dict(num_frames=16, width=16, num_heads=2, spatial_layers=1,
                         temporal_layers=1, mlp_ratio=2).items():
    config.model[key] = value
  config.batch_size = config.eval_batch_size = 8
  config.num_epochs, config.num_train_steps = 0, 4
  config.optim.warmup_steps = 1
  config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps = 2, 0, 4
  config.async_checkpoints = False
  return config


def fine2coarse(action: int) -> int:
  """The MAC 2025 starter kit's mapping (submit/generate.py), written out independently."""
  return next(g for g, last in enumerate((4, 10, 23, 31, 37, 47, 51)) if action <= last)


@pytest.mark.slow
def test_ma52_test_split_submission_from_the_released_format(tmp_path, capsys):
  names = {'train': [f'00{i:02d}_01_0001' for i in range(24)],
           'val': [f'01{i:02d}_01_0001' for i in range(8)],
           'test': [f'test{i:04d}' for i in (3, 0, 7, 1, 2, 6, 5, 4, 9, 8)]}   # list order
  write_ma52_release(tmp_path / 'ma52', names)
  config = _tiny(ma52_config.get_config(), tmp_path / 'ma52', str(tmp_path / 'tfds'))
  workdir = tmp_path / 'run'
  train.train_and_evaluate(typed(config), str(workdir))
  config.data.eval_split = 'test'
  out = tmp_path / 'test_eval'
  result = evaluate.evaluate_workdir(str(workdir), typed(config), output_dir=str(out))
  assert result['labelled'] is False and result['num_clips'] == 10 and 'top1' not in result
  assert 'unlabelled (10 clips): no metrics' in capsys.readouterr().out
  with open(out / 'prediction.csv', newline='') as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['vid', *(f'action_pred_{i}' for i in range(1, 6)),
                     *(f'body_pred_{i}' for i in range(1, 6))]
  assert [r[0] for r in rows[1:]] == [f'{n}.mp4' for n in names['test']]
  for row in rows[1:]:
    actions, bodies = [int(v) for v in row[1:6]], [int(v) for v in row[6:]]
    assert len(set(actions)) == 5 and all(0 <= a < 52 for a in actions)
    assert bodies == [fine2coarse(a) for a in actions]
  with zipfile.ZipFile(out / 'prediction.zip') as archive:
    assert archive.namelist() == ['prediction.csv']
    assert archive.read('prediction.csv') == (out / 'prediction.csv').read_bytes()
  # The action ranking is the model's: top-1 of prediction.csv = argmax of its logits.
  with np.load(out / 'eval_outputs.npz') as outputs:
    assert [int(r[1]) for r in rows[1:]] == list(outputs['logits'].argmax(1))
    assert (outputs['labels'] == -1).all()


def write_imigue_processed(root: pathlib.Path, prefix: str, n: int, labels) -> list[str]:
  """iMiGUE processed arrays: `<prefix>_data.npy` (N, 3, T, 22, 1) + `<prefix>_label.pkl`."""
  root.mkdir(parents=True, exist_ok=True)
  clips = synthetic.generate_split('test', num_clips=n, seed=len(prefix), layout='openpose22')
  t = max(c.num_frames for c in clips)
  data = np.zeros((n, 3, t, 22, 1), np.float32)
  for i, clip in enumerate(clips):
    data[i, :2, :clip.num_frames, :, 0] = np.moveaxis(clip.keypoints, -1, 0)
    data[i, 2, :clip.num_frames, :, 0] = clip.confidence
  names = [f'{prefix}{i:02d}_{i % 3}' for i in range(n)]
  np.save(root / f'{prefix}_data.npy', data)
  with open(root / f'{prefix}_label.pkl', 'wb') as f:
    pickle.dump((names, list(labels)), f)
  return names


@pytest.mark.slow
@pytest.mark.parametrize('labelled', [True, False])
def test_imigue_submission_csv_and_its_zip(tmp_path, labelled):
  rng = np.random.default_rng(1)
  write_imigue_processed(tmp_path / 'imigue', 'train', 24, rng.integers(0, 32, 24))
  test_names = write_imigue_processed(tmp_path / 'imigue', 'test', 10,
                                      rng.integers(0, 32, 10) if labelled else [-1] * 10)
  config = _tiny(imigue_config.get_config(), tmp_path / 'imigue', str(tmp_path / 'tfds'))
  workdir = tmp_path / 'run'
  summary = train.train_and_evaluate(typed(config), str(workdir))
  assert ('top1' in summary['final']) == labelled
  lines = (workdir / 'Submission.csv').read_text().splitlines()
  with np.load(workdir / 'eval_outputs.npz') as outputs:
    expected = [f'{n},{p}' for n, p in zip(outputs['clip_ids'], outputs['logits'].argmax(1))]
  assert lines == expected and sorted(n for n, _ in (l.split(',') for l in lines)) == sorted(
      test_names)
  with zipfile.ZipFile(workdir / 'Submission.zip') as archive:
    assert archive.namelist() == ['Submission.csv']
    assert archive.read('Submission.csv') == (workdir / 'Submission.csv').read_bytes()


def test_inference_never_imports_the_training_loop():
  """eval, predict, export and ensemble (and everything they import) load without train.py."""
  script = ('import sys\n'
            'import micro_dualnet_jax.evaluate, micro_dualnet_jax.predict\n'
            'import micro_dualnet_jax.export, micro_dualnet_jax.ensemble, micro_dualnet_jax.inference\n'
            'import micro_dualnet_jax.export_onnx\n'
            'loaded = [m for m in sys.modules if m == "micro_dualnet_jax.train"]\n'
            'assert not loaded, loaded\n')
  subprocess.run([sys.executable, '-c', script], cwd=ROOT, check=True, timeout=TIMEOUT_S,
                 env={**os.environ, 'XLA_FLAGS': ''})


def test_a_work_directory_of_the_older_format_is_refused_by_name(finished, tmp_path, data_dir):
  """A directory without run.json (written before the format was recorded) is refused for
  training and inference alike, saying why and what to do."""
  old = tmp_path / 'old'
  shutil.copytree(finished, old)
  os.remove(old / 'run.json')
  before = snapshot(old)
  config = smoke.get_config()
  config.data.data_dir = data_dir
  for attempt in (lambda: train.train_and_evaluate(typed(config), str(old)),
                  lambda: evaluate.evaluate_workdir(str(old))):
    with pytest.raises(RunDirError, match='written by an older micro_dualnet_jax.*train again'):
      attempt()
  assert snapshot(old) == before


# ----------------------------------------------------------------------------- from any folder

FIXTURE = ROOT / 'tests' / 'fixtures' / 'run_format2_commit1295892'


def main_py_in(folder: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
  """python <checkout>/main.py args, run from `folder` (outside the checkout), one device."""
  assert not folder.resolve().is_relative_to(ROOT)
  env = {**os.environ, 'XLA_FLAGS': ''}
  return subprocess.run([sys.executable, str(ROOT / 'main.py'), *args], cwd=folder, env=env,
                        text=True, capture_output=True, timeout=TIMEOUT_S, check=False)


def test_main_py_from_another_folder_evaluates_a_run(tmp_path):
  """`cd /tmp && python <checkout>/main.py --mode=eval --workdir=<run>`: no --config given, so
  the default config is read from beside main.py and the run's own config.json is used."""
  run, elsewhere = tmp_path / 'run', tmp_path / 'elsewhere'
  shutil.copytree(FIXTURE, run)
  elsewhere.mkdir()
  done = main_py_in(elsewhere, '--mode=eval', f'--workdir={run}', '--checkpoint=latest',
                    f'--config.data.data_dir={tmp_path / "tfds"}', '--output=scored')
  assert done.returncode == 0, done.stdout + done.stderr
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert (result['step'], result['num_samples']) == (4, 24)
  scored = json.loads((elsewhere / 'scored' / 'eval_metrics.json').read_text())
  assert scored['checkpoint'] == {'step': 4, 'which': 'latest'}   # --output relative to the cwd


@pytest.mark.slow
def test_main_py_from_another_folder_trains_predicts_and_exports(tmp_path):
  """Every path relative to the working directory, a config file given by its path."""
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  clip = synthetic.generate_split('test', num_clips=1, seed=2)[0]
  np.save(elsewhere / 'clip.npy', np.concatenate([clip.keypoints, clip.confidence[..., None]],
                                                 -1)[:20])
  commands = [
      [f'--config={ROOT / "configs" / "smoke.py"}', '--workdir=run', '--config.data.data_dir=tfds',
       '--config.num_train_steps=4'],
      ['--mode=predict', '--workdir=run', '--input=clip.npy'],
      ['--mode=export', '--workdir=run']]
  for args in commands:
    done = main_py_in(elsewhere, *args)
    assert done.returncode == 0, (args, done.stdout + done.stderr)
  assert json.loads((elsewhere / 'run' / 'summary.json').read_text())['step'] == 4
  assert (elsewhere / 'run' / 'predict' / 'clip' / 'prediction.json').is_file()
  assert json.loads((elsewhere / 'run' / 'export' / 'labels.json').read_text()) == \
      synthetic.class_names()

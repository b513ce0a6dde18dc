"""Work directories written by older versions, and how errors reach the user.

tests/fixtures/run_format2_commit1295892 is a tiny smoke run (width 8, 4 steps) trained by the
commit before the typed configuration (1295892): its config.json is the ConfigDict's, its
run.json has no class names. It must keep loading for eval, predict and export.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from micro_dualnet_jax import cli, evaluate, export, predict
from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.rundir import RunDir

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'run_format2_commit1295892'


@pytest.fixture(name='old_run')
def _old_run(tmp_path):
  path = tmp_path / 'run'
  shutil.copytree(FIXTURE, path)
  return path


def test_a_run_of_the_previous_format_loads_for_eval_predict_and_export(old_run, tmp_path):
  run = RunDir(str(old_run))
  assert 'class_names' not in json.loads((old_run / 'run.json').read_text())
  assert run.class_names() == synthetic.class_names()        # the registry's, by its dataset
  assert run.config().model.width == 8 and run.config().model.mac_projection
  result = evaluate.evaluate_workdir(str(old_run), overrides={
      'data.data_dir': str(tmp_path / 'tfds')}, checkpoint='latest',
                                     output_dir=str(tmp_path / 'eval'), verbose=False)
  assert result['step'] == 4 and result['num_samples'] == 24
  scored = json.loads((tmp_path / 'eval' / 'eval_metrics.json').read_text())
  assert scored['checkpoint'] == {'step': 4, 'which': 'latest'}
  assert scored['test_time'] == {'num_clips': 1, 'flip': False}

  clip = synthetic.generate_split('test', num_clips=1, seed=1)[0]
  frames = np.concatenate([clip.keypoints, clip.confidence[..., None]], -1)[:20]   # < window
  np.save(tmp_path / 'clip.npy', frames)
  [summary] = predict.run_predict(None, str(old_run), str(tmp_path / 'clip.npy'),
                                  str(tmp_path / 'predict'), verbose=False)
  assert summary['status'] == 'ok' and summary['top_k'][0]['class'] in synthetic.class_names()

  manifest = export.run_export(None, str(old_run), str(tmp_path / 'export'))
  assert manifest['checkpoint_step'] == 4
  assert json.loads((tmp_path / 'export' / 'labels.json').read_text()) == \
      synthetic.class_names()


def test_a_user_error_is_one_line_and_exit_2(old_run, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.run('eval', None, str(old_run), checkpoint='newest', config_given=False)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == "error: checkpoint must be 'best' or 'latest', got 'newest'\n"


def test_a_bug_that_raises_value_error_keeps_its_traceback_and_exits_1(old_run):
  """A ValueError from inside the code (here a deep function made to raise one) is not shown as
  if the user had typed something wrong."""
  code = ('import sys; import main; from absl import app\n'
          'from micro_dualnet_jax import inference\n'
          'def broken(*args, **kwargs):\n'
          '  raise ValueError("an internal bug")\n'
          'inference.restore_model = broken\n'
          f'sys.argv = ["main.py", "--mode=eval", "--workdir={old_run}"]\n'
          'app.run(main.main, flags_parser=main.parse_flags)\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 1, done.stdout + done.stderr
  assert 'Traceback' in done.stderr and 'ValueError: an internal bug' in done.stderr
  assert 'error: an internal bug' not in done.stderr

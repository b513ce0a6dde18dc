"""Your own dataset (docs/own_dataset.md): the plain-folder reader, its checks, and the page's
commands run as written."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from micro_dualnet_jax import cli
from micro_dualnet_jax.data import prepare, registry
from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.data.readers import folder
from micro_dualnet_jax.skeleton import get_layout
from tests.support import smoke_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'own_dataset.md'
CLASSES = ('wave', 'nod', 'shrug')
V = get_layout('coco17').num_joints


def write_folder(root: pathlib.Path, clips: dict[str, tuple[np.ndarray, str, str]]) -> None:
  """root/labels.csv and one .npy per clip: {file: (array, label, split)}."""
  root.mkdir(parents=True, exist_ok=True)
  with open(root / 'labels.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(('file', 'label', 'split'))
    for file, (array, label, split) in clips.items():
      (root / file).parent.mkdir(parents=True, exist_ok=True)
      np.save(root / file, array)
      writer.writerow((file, label, split))


def good_clips(seed: int = 0) -> dict[str, tuple[np.ndarray, str, str]]:
  """Seven coco17 clips (2D + confidence) of three classes: five train, two test."""
  rng = np.random.default_rng(seed)
  clips = {}
  for i, (label, split) in enumerate([('wave', 'train'), ('nod', 'train'), ('shrug', 'train'),
                                      ('wave', 'train'), ('nod', 'train'), ('shrug', 'test'),
                                      ('wave', 'test')]):
    frames = 10 + 3 * i
    array = np.concatenate([rng.uniform(0, 640, (frames, V, 2)),
                            rng.uniform(0.1, 1.0, (frames, V, 1))], -1).astype(np.float32)
    clips[f'clips/{split}_{i}.npy'] = (array, label, split)
  return clips


def folder_config(data_dir: str, manual_dir: pathlib.Path):
  return smoke_config(data_dir, **{'data.name': 'folder', 'data.manual_dir': str(manual_dir),
                                  'data.options': {'classes': CLASSES, 'layout': 'coco17'},
                                  'model.layout': 'coco17', 'model.num_classes': 3})


def test_prepared_split_holds_the_folder_clips(tmp_path):
  clips = good_clips()
  clips['clips/train_1.npy'] = (clips['clips/train_1.npy'][0][..., :2], 'nod', 'train')  # no conf
  write_folder(tmp_path / 'data', clips)
  stats = prepare.prepare_dataset('folder', str(tmp_path / 'data'), str(tmp_path / 'tfds'),
                                  classes=CLASSES, layout='coco17')
  assert [(s['split'], s['clips'], s['class_counts']) for s in stats] == [
      ('train', 5, [2, 2, 1]), ('test', 2, [1, 0, 1])]
  records = prepare.load_split('folder', 'train', str(tmp_path / 'tfds'),
                               manual_dir=str(tmp_path / 'data'), classes=CLASSES,
                               layout='coco17')
  by_id = {r['clip_id'].decode(): r for r in records}
  assert sorted(by_id) == [f'clips/train_{i}' for i in range(5)]
  for file, (array, label, split) in clips.items():
    if split != 'train':
      continue
    record = by_id[file[:-len('.npy')]]
    assert record['label'] == CLASSES.index(label)
    np.testing.assert_array_equal(record['keypoints'], array[..., :2])
    expected = array[..., 2] if array.shape[-1] == 3 else np.ones(array.shape[:2], np.float32)
    np.testing.assert_array_equal(record['confidence'], expected)
  # An edited labels.csv is another prepared dataset, never the stale one.
  release_config = registry.get_spec('folder').release_config
  before = release_config(tmp_path / 'data', {'classes': CLASSES, 'layout': 'coco17'}, False)
  with open(tmp_path / 'data' / 'labels.csv', 'a') as f:
    f.write('clips/test_5.npy,wave,validation\n')
  after = release_config(tmp_path / 'data', {'classes': CLASSES, 'layout': 'coco17'}, False)
  assert before.name != after.name


def test_split_aliases_are_prepares():
  assert folder.SPLIT_ALIASES == prepare.SPLIT_ALIASES


def test_an_unlabelled_split_is_read_with_label_minus_one(tmp_path):
  clips = good_clips()
  clips = {f: (a, '' if s == 'test' else label, s) for f, (a, label, s) in clips.items()}
  write_folder(tmp_path, clips)
  test = folder.read_folder_split(tmp_path, 'test', CLASSES, 'coco17')
  assert [c.label for c in test] == [-1, -1]
  clips['clips/test_6.npy'] = (clips['clips/test_6.npy'][0], 'wave', 'test')
  write_folder(tmp_path, clips)
  with pytest.raises(DataFormatError, match="line 7: split 'test' has labelled and unlabelled"):
    folder.read_labels(tmp_path, CLASSES)


def _refused(tmp_path, capsys, clips, *, expected: str) -> None:
  """--mode=prepare on the folder: exit 2, one line on stderr matching `expected`, and nothing
  written (data_dir never created)."""
  write_folder(tmp_path / 'data', clips)
  config = folder_config(str(tmp_path / 'tfds'), tmp_path / 'data')
  with pytest.raises(SystemExit) as exit_info:
    cli.run('prepare', config, None)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and re.search(expected, err), err
  assert not (tmp_path / 'tfds').exists()


def test_a_missing_clip_file_is_refused_by_name(tmp_path, capsys):
  clips = good_clips()
  write_folder(tmp_path / 'data', clips)
  os.remove(tmp_path / 'data' / 'clips' / 'train_3.npy')
  config = folder_config(str(tmp_path / 'tfds'), tmp_path / 'data')
  with pytest.raises(SystemExit):
    cli.run('prepare', config, None)
  err = capsys.readouterr().err.strip()
  assert re.fullmatch(r'error: \S+/data/labels.csv line 5: \S+/data/clips/train_3.npy not found',
                      err), err
  assert not (tmp_path / 'tfds').exists()


def test_a_shape_that_is_not_the_layout_is_refused_by_name(tmp_path, capsys):
  clips = good_clips()
  array, label, split = clips['clips/train_2.npy']
  clips['clips/train_2.npy'] = (array[:, :12], label, split)      # 12 joints, coco17 has 17
  _refused(tmp_path, capsys, clips, expected=(
      r'error: \S+/clips/train_2.npy: shape \(16, 12, 3\), expected \(T, 17, 2\) or '
      r"\(T, 17, 3\) \(confidence last\) for layout 'coco17'$"))


def test_an_unknown_label_is_refused_by_name(tmp_path, capsys):
  clips = good_clips()
  clips['clips/train_1.npy'] = (clips['clips/train_1.npy'][0], 'jump', 'train')
  _refused(tmp_path, capsys, clips, expected=(
      r"error: \S+/data/labels.csv line 3: label 'jump' is not one of the classes "
      r"\['wave', 'nod', 'shrug'\]"))


def test_a_clip_of_zero_frames_is_refused_by_name(tmp_path, capsys):
  clips = good_clips()
  clips['clips/train_4.npy'] = (np.zeros((0, V, 3), np.float32), 'nod', 'train')
  _refused(tmp_path, capsys, clips,
           expected=r'error: \S+/clips/train_4.npy: the clip has 0 frames$')


def test_nan_is_refused_by_name(tmp_path, capsys):
  clips = good_clips()
  array = clips['clips/train_0.npy'][0].copy()
  array[7, 3, 1] = np.nan
  clips['clips/train_0.npy'] = (array, 'wave', 'train')
  _refused(tmp_path, capsys, clips,
           expected=r'error: \S+/clips/train_0.npy: NaN or inf at frame 7, joint 3$')


@pytest.mark.parametrize('change, expected', [
    (lambda rows: rows.__setitem__(0, 'file,label\n'), r'the first line must be the header'),
    (lambda rows: rows.append('clips/train_0.npy,wave,train\n'), r'line 9: .* listed twice'),
    (lambda rows: rows.append('clips/x.txt,wave,train\n'), r"line 9: file 'clips/x.txt' is not"),
    (lambda rows: rows.append('clips/train_0.npy,wave\n'), r'line 9: 2 fields, expected 3'),
    (lambda rows: rows.append('clips/train_0.npy,wave,my split\n'), r"split 'my split' is not"),
], ids=['header', 'twice', 'not-npy', 'fields', 'split-name'])
def test_labels_csv_problems_name_the_line(tmp_path, change, expected):
  write_folder(tmp_path, good_clips())
  rows = (tmp_path / 'labels.csv').read_text().splitlines(keepends=True)
  change(rows)
  (tmp_path / 'labels.csv').write_text(''.join(rows))
  with pytest.raises(DataFormatError, match=expected):
    folder.read_labels(tmp_path, CLASSES)


def test_confidence_outside_zero_one_and_bad_options_are_refused(tmp_path):
  clips = good_clips()
  clips['clips/train_0.npy'][0][2, 5, 2] = 1.5
  write_folder(tmp_path, clips)
  with pytest.raises(DataFormatError, match=r'train_0.npy: confidence 1.5 at frame 2, joint 5'):
    folder.check_folder(tmp_path, CLASSES, 'coco17')
  with pytest.raises(ValueError, match="dataset 'folder' needs data.options.classes"):
    registry.get_spec('folder').check_options({'layout': 'coco17'})
  with pytest.raises(ValueError, match='lists a class twice'):
    registry.get_spec('folder').check_options({'classes': ('a', 'a'), 'layout': 'coco17'})


# ----------------------------------------------------------------------------- the page


def page_blocks() -> tuple[str, str]:
  """(the config file the page says to save as $WORK/my_gestures.py, its bash blocks joined)."""
  text = PAGE.read_text()
  config = re.search(r'Save this as `\$WORK/my_gestures.py`:\n\n```python\n(.*?)^```', text,
                     re.S | re.M)
  assert config, 'the page no longer shows the config to save'
  bash = re.findall(r'^```bash\n(.*?)^```', text, re.S | re.M)
  return config.group(1), '\n'.join(bash)


@pytest.mark.slow
def test_the_page_commands_run_as_written(tmp_path):
  config_text, commands = page_blocks()
  # The reader saves the config between the demo folder and prepare: so does this test, with
  # the commands up to that point run first.
  before, after = commands.split('python main.py --mode=prepare', 1)
  env = {**os.environ, 'WORK': str(tmp_path / 'work'), 'XLA_FLAGS': '',
         'PATH': f'{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}'}

  def bash(script):
    done = subprocess.run(['bash', '-euo', 'pipefail', '-c', script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout

  bash(before)
  (tmp_path / 'work' / 'my_gestures.py').write_text(config_text)
  out = bash('WORK=${WORK}\npython main.py --mode=prepare' + after)
  stats = [json.loads(line) for line in out.splitlines() if line.startswith('{"split"')]
  assert [(s['split'], s['clips'], s['class_counts']) for s in stats[:2]] == [
      ('train', 48, [12, 12, 12, 12]), ('test', 24, [6, 6, 6, 6])]
  work = tmp_path / 'work'
  metrics = json.loads((work / 'run' / 'eval_metrics.json').read_text())
  assert metrics['num_samples'] == 24
  # --mode=eval printed the same checkpoint's metrics the run wrote.
  evaluated = [json.loads(line) for line in out.splitlines() if line.startswith('{"step"')]
  assert evaluated and evaluated[-1]['top1'] == pytest.approx(metrics['top1'])
  predictions = (work / 'run' / 'predictions.csv').read_text().splitlines()
  assert len(predictions) == 25 and predictions[1].startswith('clips/test_')
  # The clip is longer than one window (2 x 16 frames): a timeline of the four classes.
  summary = json.loads((work / 'predict' / 'summary.json').read_text())
  clip = np.load(work / 'my_gestures' / 'clips' / 'test_0000.npy')
  assert (summary['num_frames'], summary['layout'], summary['workdir_step']) == (
      len(clip), 'upper10', 60)
  assert list(summary['percent_of_time']) == [
      'touch_forehead', 'cross_arms', 'nod', 'shrug', 'no person']
  assert sum(summary['frames'].values()) == len(clip)

"""TFDS builders and the prepare step: fixtures -> array_record -> tfds.data_source round trips."""

from __future__ import annotations

import json
import pathlib
import pickle
import re
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from micro_dualnet_jax.data import builders, prepare
from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers import imigue
from micro_dualnet_jax.data import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pickle(path: pathlib.Path, obj) -> None:
  with open(path, 'wb') as f:
    pickle.dump(obj, f)


def write_imigue_processed(root: pathlib.Path, prefix: str, lengths: list[int],
                           labels: list[int]) -> None:
  """(N, 3, 90, 22, 1) arrays with clip i holding `lengths[i]` frames of coordinates i + 1 and
  confidence 1."""
  root.mkdir(parents=True, exist_ok=True)
  data = np.zeros((len(lengths), 3, 90, 22, 1), np.float32)
  for i, n in enumerate(lengths):
    data[i, :2, :n] = i + 1
    data[i, 2, :n] = 1.0
  np.save(root / f'{prefix}_data.npy', data)
  _pickle(root / f'{prefix}_label.pkl', ([f'{prefix}{i:03d}_0' for i in range(len(lengths))],
                                         labels))


def write_imigue_raw(root: pathlib.Path) -> None:
  folder = root / 'imigue_skeleton_train' / '0001'
  folder.mkdir(parents=True)
  rows = [','.join([str(f)] + ['1'] * 105) for f in range(6)]
  (folder / '0001_light_hand.csv').write_text('\n'.join(rows))
  (folder / '0001_label.csv').write_text('3,0,1\n99,2,5\n')


def write_ma52(root: pathlib.Path, prefix: str, entries: list[tuple[str, int]]) -> None:
  root.mkdir(parents=True, exist_ok=True)
  (root / f'{prefix}_list_videos.txt').write_bytes(
      '\r\n'.join(f'{n}.mp4 {label}' for n, label in entries).encode())
  _pickle(root / f'MA52_{prefix}.pkl', [
      {'frame_dir': n, 'label': label, 'total_frames': 2 + i,
       'keypoint': np.full((1, 2 + i, 28, 2), i, np.float32),
       'keypoint_score': np.ones((1, 2 + i, 28), np.float32)}
      for i, (n, label) in enumerate(entries)])


def write_nwucla(root: pathlib.Path, names_labels: list[tuple[str, int, int]]) -> None:
  sqe = root / 'all_sqe'
  sqe.mkdir(parents=True)
  for name, label, frames in names_labels:
    (sqe / f'{name}.json').write_text(json.dumps(
        {'file_name': name, 'label': label, 'skeletons': [[[0.5, 1.0, 3.0]] * 20] * frames}))


def by_id(source) -> dict[str, dict]:
  records = [source[i] for i in range(len(source))]
  return {r['clip_id'].decode(): r for r in records}


def test_clip_features_and_example_share_one_spec():
  features = builders.clip_features('kinect20', extra=('body_label',))
  assert features['keypoints'].shape == (None, 20, 3)
  assert features['confidence'].shape == (None, 20)
  assert features['label'].np_dtype == np.int64
  assert features['num_frames'].np_dtype == np.int32
  assert set(features.keys()) == {'keypoints', 'confidence', 'label', 'clip_id', 'num_frames',
                                  'body_label'}
  clip = Clip('c', np.ones((3, 20, 3), np.float32), np.ones((3, 20), np.float32), 4, 'kinect20',
              meta={'body_label': 2})
  key, example = builders.clip_example(clip, ('body_label',))
  assert key == 'c' and example['num_frames'] == 3 and example['body_label'] == 2
  assert builders.Imigue.name == 'imigue' and builders.Nwucla.name == 'nwucla'
  for name in registry.dataset_names():
    # A folder dataset is the user's own: there is no citation to give for it.
    cls = registry.get_spec(name).builder_class()
    assert '@' in cls.CITATION or (name == 'folder' and not cls.CITATION)
  for cls in (builders.Imigue, builders.Ma52, builders.Nwucla):
    assert 'manual folder' in cls.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_imigue_processed_round_trip_without_tensorflow(tmp_path):
  manual = tmp_path / 'manual'
  write_imigue_processed(manual, 'train', [90, 5, 1, 30], [0, 31, 0, 7])
  write_imigue_processed(manual, 'valid', [12, 3], [2, 2])
  data_dir = str(tmp_path / 'tfds')
  stats = prepare.prepare_dataset('imigue', str(manual), data_dir)
  counts = [0] * 32
  counts[0], counts[31], counts[7] = 2, 1, 1
  assert stats == [
      {'split': 'train', 'clips': 4, 'class_counts': counts,
       'frames': {'min': 1, 'median': 17.5, 'max': 90}},
      {'split': 'validation', 'clips': 2, 'class_counts': [0, 0, 2] + [0] * 29,
       'frames': {'min': 3, 'median': 7.5, 'max': 12}}]
  assert 'tensorflow' not in sys.modules
  source = prepare.load_split('imigue', 'val', data_dir)
  assert len(source) == 2
  records = by_id(prepare.load_split('imigue', 'train', data_dir))
  clips = imigue.read_processed_split(manual, 'train')
  assert set(records) == {c.clip_id for c in clips}
  for clip in clips:
    r = records[clip.clip_id]
    np.testing.assert_array_equal(r['keypoints'], clip.keypoints)
    np.testing.assert_array_equal(r['confidence'], clip.confidence)
    assert r['keypoints'].dtype == np.float32 and r['keypoints'].shape == (clip.num_frames, 22, 2)
    assert (int(r['label']), int(r['num_frames'])) == (clip.label, clip.num_frames)
  # The plain TFDS entry point reads the same files.
  direct = tfds.data_source('imigue/processed', split='validation', data_dir=data_dir)
  assert sorted(by_id(direct)) == ['valid000_0', 'valid001_0']
  builder = prepare.make_builder('imigue', data_dir, 'processed')
  assert builder.info.metadata['class_names'][31] == 'illustrative'
  assert builder.info.metadata['layout'] == 'openpose22'
  assert all(p.suffix != '.tfrecord' and 'tfrecord' not in p.name
             for p in pathlib.Path(builder.data_dir).iterdir())
  assert any('array_record' in p.name for p in pathlib.Path(builder.data_dir).iterdir())


def test_imigue_detects_raw_release_and_refuses_ambiguity(tmp_path):
  manual = tmp_path / 'downloads' / 'manual' / 'imigue'
  write_imigue_raw(manual)
  stats = prepare.prepare_dataset('imigue', None, str(tmp_path))  # default manual folder
  assert [(s['split'], s['clips'], s['frames']) for s in stats] == [
      ('train', 2, {'min': 2, 'median': 3.0, 'max': 4})]
  assert stats[0]['class_counts'][2] == 1 and stats[0]['class_counts'][31] == 1
  records = by_id(prepare.load_split('imigue', 'train', str(tmp_path)))
  assert records['0001_1']['keypoints'].shape == (4, 22, 2)
  write_imigue_processed(manual, 'train', [4], [1])
  with pytest.raises(ValueError, match='holds both the raw iMiGUE release'):
    prepare.prepare_dataset('imigue', str(manual), str(tmp_path))
  stats = prepare.prepare_dataset('imigue', str(manual), str(tmp_path), source='processed')
  assert stats[0]['clips'] == 1
  with pytest.raises(ValueError, match=r"2 prepared iMiGUE configs \['raw', 'processed'\]"):
    prepare.load_split('imigue', 'train', str(tmp_path))
  assert len(prepare.load_split('imigue', 'train', str(tmp_path), source='raw')) == 2


def test_ma52_round_trip_with_body_label_and_unlabelled_test(tmp_path):
  write_ma52(tmp_path, 'train', [('0001_01_0001', 0), ('0001_01_0002', 50), ('0002_01_0001', 6)])
  write_ma52(tmp_path, 'test', [('test0000', 0), ('test0001', 0)])
  stats = prepare.prepare_dataset('ma52', str(tmp_path), str(tmp_path / 'tfds'))
  assert [s['split'] for s in stats] == ['train', 'test']
  assert stats[0]['class_counts'][0] == stats[0]['class_counts'][50] == 1
  assert len(stats[0]['class_counts']) == 52 and 'unlabelled' not in stats[0]
  assert stats[1]['clips'] == 2 and stats[1]['unlabelled'] == 2
  assert sum(stats[1]['class_counts']) == 0
  train = by_id(prepare.load_split('ma52', 'train', str(tmp_path / 'tfds')))
  assert {k: int(r['body_label']) for k, r in train.items()} == {
      '0001_01_0001.mp4': 0, '0001_01_0002.mp4': 6, '0002_01_0001.mp4': 1}
  np.testing.assert_array_equal(train['0002_01_0001.mp4']['keypoints'], np.full((4, 28, 2), 2))
  test = by_id(prepare.load_split('ma52', 'test', str(tmp_path / 'tfds')))
  assert {(int(r['label']), int(r['body_label'])) for r in test.values()} == {(-1, -1)}


def test_nwucla_round_trip_and_split_errors(tmp_path):
  write_nwucla(tmp_path / 'manual', [('a01_s01_e00_v01', 1, 3), ('a02_s01_e00_v02', 2, 1),
                                     ('a12_s02_e01_v03', 10, 4)])
  data_dir = str(tmp_path / 'tfds')
  stats = prepare.prepare_dataset('nwucla', str(tmp_path / 'manual'), data_dir)
  assert stats == [
      {'split': 'train', 'clips': 2, 'class_counts': [1, 1] + [0] * 8,
       'frames': {'min': 1, 'median': 2.0, 'max': 3}},
      {'split': 'test', 'clips': 1, 'class_counts': [0] * 9 + [1],
       'frames': {'min': 4, 'median': 4.0, 'max': 4}},
      {'split': 'view1', 'clips': 1, 'class_counts': [1] + [0] * 9,
       'frames': {'min': 3, 'median': 3.0, 'max': 3}},
      {'split': 'view2', 'clips': 1, 'class_counts': [0, 1] + [0] * 8,
       'frames': {'min': 1, 'median': 1.0, 'max': 1}}]
  # The model-selection splits hold the training views, one each, and never the test view.
  assert [r['clip_id'] for r in prepare.load_split('nwucla', 'view1', data_dir)] == [
      b'a01_s01_e00_v01']
  assert [r['clip_id'] for r in prepare.load_split('nwucla', 'view2', data_dir)] == [
      b'a02_s01_e00_v02']
  (record,) = by_id(prepare.load_split('nwucla', 'test', data_dir)).values()
  np.testing.assert_array_equal(record['keypoints'], np.tile([0.5, 1.0, 3.0], (4, 20, 1)))
  np.testing.assert_array_equal(record['confidence'], np.ones((4, 20)))
  with pytest.raises(ValueError, match=r"nwucla has no split 'validation'; prepared splits: "
                     r"\['train', 'test', 'view1', 'view2'\]"):
    prepare.load_split('nwucla', 'validation', data_dir)
  with pytest.raises(ValueError, match=r"unknown options \['seed'\] for dataset 'nwucla'"):
    prepare.load_split('nwucla', 'test', data_dir, seed=1)


def test_the_docs_say_how_to_get_every_dataset_as_its_builder_does():
  """What the one-line error points to (docs/data_formats.md, "Getting the datasets") holds each
  builder's download instructions: every address and every file or folder they name."""
  docs = (ROOT / 'docs' / 'data_formats.md').read_text()
  section = docs[docs.index('## Getting the datasets'):]
  section = section[:section.index('\n## ', 3)]
  for cls in (builders.Imigue, builders.Ma52, builders.Nwucla):
    text = cls.MANUAL_DOWNLOAD_INSTRUCTIONS
    named = re.findall(r'https?://\S+|\b\w+\.(?:txt|pkl|npy|csv|json)\b|\b\w+/', text)
    assert named, cls
    for item in named:
      assert item.rstrip(');') in section, (cls.__name__, item)


def test_malformed_file_fails_prepare_with_its_name(tmp_path):
  write_nwucla(tmp_path, [('a01_s01_e00_v01', 1, 3)])
  (tmp_path / 'all_sqe' / 'a01_s01_e00_v01.json').write_text('{"file_name": "a01_s')
  with pytest.raises(DataFormatError, match=r'a01_s01_e00_v01.json: not valid JSON'):
    prepare.prepare_dataset('nwucla', str(tmp_path), str(tmp_path / 'tfds'))


def test_missing_dataset_says_where_it_looked_and_where_to_read_how_to_get_it(tmp_path):
  with pytest.raises(prepare.DatasetNotFoundError) as err:
    prepare.prepare_dataset('ma52', str(tmp_path / 'nothing'), str(tmp_path))
  assert str(err.value) == (
      f"No data of dataset 'ma52' found (looked in: {tmp_path / 'nothing'}, "
      f"{tmp_path / 'nothing' / 'ma52'}). MA-52 is released under a signed agreement: "
      'docs/data_formats.md, "Getting the datasets", says where to request it and which files '
      'the folder must hold.')
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'readme.txt').write_text('not a dataset')
  with pytest.raises(prepare.DatasetNotFoundError) as err:
    prepare.prepare_dataset('imigue', str(tmp_path / 'other'), str(tmp_path))
  assert '\n' not in str(err.value) and str(err.value).startswith(
      f"No data of dataset 'imigue' found (looked in: {tmp_path / 'other'}, ")
  with pytest.raises(prepare.DatasetNotFoundError, match='is not prepared in'):
    prepare.load_split('ma52', 'train', str(tmp_path))
  with pytest.raises(prepare.DatasetNotFoundError, match='imigue is not prepared in'):
    prepare.load_split('imigue', 'train', str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset 'ntu'"):
    prepare.prepare_dataset('ntu', None, str(tmp_path))


def test_synthetic_configs_do_not_collide(tmp_path):
  data_dir = str(tmp_path)
  small = prepare.prepare_dataset('synthetic', None, data_dir, num_train=4, num_test=2, seed=3)
  other = prepare.prepare_dataset('synthetic', None, data_dir, num_train=6, num_test=2, seed=3,
                                  layout='openpose28')
  assert [s['clips'] for s in small] == [4, 2] and [s['clips'] for s in other] == [6, 2]
  a = prepare.load_split('synthetic', 'train', data_dir, num_train=4, num_test=2, seed=3)
  b = prepare.load_split('synthetic', 'train', data_dir, num_train=6, num_test=2, seed=3,
                         layout='openpose28')
  assert (len(a), len(b)) == (4, 6)
  assert a[0]['keypoints'].shape[1:] == (22, 2) and b[0]['keypoints'].shape[1:] == (28, 2)
  assert builders.SyntheticConfig(num_train=4, num_test=2, seed=3).name == (
      'openpose22_train4_test2_seed3')
  with pytest.raises(ValueError, match=r"unknown synthetic options \['size'\]"):
    prepare.load_split('synthetic', 'train', data_dir, size=3)


def test_sliced_split_holds_out_part_of_train(tmp_path):
  """'train[:75%]' / 'train[75%:]' partition the train split (model selection without test)."""
  data_dir = str(tmp_path)
  prepare.prepare_dataset('synthetic', None, data_dir, num_train=8, num_test=2, seed=3)
  options = dict(num_train=8, num_test=2, seed=3)
  fit = prepare.load_split('synthetic', 'train[:75%]', data_dir, **options)
  held_out = prepare.load_split('synthetic', 'train[75%:]', data_dir, **options)
  ids = lambda source: {r['clip_id'] for r in source}
  assert (len(fit), len(held_out)) == (6, 2)
  assert ids(fit) | ids(held_out) == ids(prepare.load_split('synthetic', 'train', data_dir,
                                                           **options))
  assert not ids(fit) & ids(held_out)
  with pytest.raises(ValueError, match="no split 'dev'"):
    prepare.load_split('synthetic', 'dev[:10%]', data_dir, **options)


def test_the_synthetic_sets_default_sizes_make_a_builder(tmp_path):
  """configs/default.py asks for SyntheticConfig() with its default sizes, which TFDS also lists
  as the builder's predefined config: a custom config of that name was refused."""
  from micro_dualnet_jax.data import builders, prepare  # pylint: disable=g-import-not-at-top
  builder = prepare.make_builder('synthetic', str(tmp_path), builders.SyntheticConfig())
  assert builder.builder_config.name == builders.SyntheticConfig().name
  smaller = builders.SyntheticConfig(num_train=8, num_test=4)
  assert prepare.make_builder('synthetic', str(tmp_path), smaller).builder_config.num_train == 8

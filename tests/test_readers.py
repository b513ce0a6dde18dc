"""Readers (docs/data_formats.md) on small fixtures written in each exact format."""

from __future__ import annotations

import csv
import json
import pathlib
import pickle

import numpy as np
import pytest

from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.data.readers import imigue, ma52, nwucla, openpose_json, pyskl
from micro_dualnet_jax.skeleton import get_layout

NWUCLA_ROOT = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'datasets' / (
    'nw_ucla')


# ---------------------------------------------------------------------------------------------
# iMiGUE raw CSV (Section 1a).


def raw_frames(num_frames: int) -> np.ndarray:
  """(F, 35, 3) distinct values: x = 1000 f + j + 1, y = 2000 + j, confidence 0.5."""
  f, j = np.meshgrid(np.arange(num_frames), np.arange(35), indexing='ij')
  return np.stack([1000.0 * f + j + 1, 2000.0 + j, np.full(f.shape, 0.5)], -1)


def write_raw_video(split_dir: pathlib.Path, video: str, frames: np.ndarray,
                    labels: list[str]) -> pathlib.Path:
  folder = split_dir / video
  folder.mkdir(parents=True)
  rows = [','.join([str(i)] + [f'{v:g}' for v in frame.reshape(-1)])
          for i, frame in enumerate(frames)]
  (folder / f'{video}_light_hand.csv').write_text('\n'.join(rows) + '\n')
  (folder / f'{video}_label.csv').write_text('\n'.join(labels) + '\n')
  return folder


def test_imigue_raw_cuts_clips_maps_labels_and_converts_to_openpose22(tmp_path):
  frames = raw_frames(10)
  frames[2, 15] = 0  # R-eye missing in frame 2: 0,0,0
  folder = write_raw_video(tmp_path, '0187', frames, ['5,0,3', '32,4,4', '99,5,9', '1,2,6'])
  clips = imigue.read_raw_video(folder, 'train')
  assert [c.clip_id for c in clips] == ['0187_0', '0187_1', '0187_2', '0187_3']
  assert [c.label for c in clips] == [4, 31, 31, 0]
  assert [c.num_frames for c in clips] == [4, 1, 5, 5]
  assert all(c.layout == 'openpose22' for c in clips)
  c0 = clips[0]
  assert c0.keypoints.shape == (4, 22, 2) and c0.keypoints.dtype == np.float32
  assert c0.confidence.shape == (4, 22)
  # openpose22 joint 8 (R-eye) is raw joint 15; 12..16 / 17..21 are raw 25..29 / 30..34.
  np.testing.assert_array_equal(c0.keypoints[1, 8], [1000 + 16, 2015])
  np.testing.assert_array_equal(c0.keypoints[3, 12:17, 0], 3000 + np.arange(26, 31))
  np.testing.assert_array_equal(c0.keypoints[0, 17:22, 1], 2000 + np.arange(30, 35))
  assert c0.confidence[2, 8] == 0 and c0.confidence[1, 8] == 0.5
  np.testing.assert_array_equal(clips[3].keypoints[:, 0, 0], 1000 * np.arange(2, 7) + 1)
  assert clips[2].meta == {'video': '0187', 'clip_index': 2, 'start_frame': 5, 'end_frame': 9,
                           'gesture_id': 99, 'split': 'train'}


def test_imigue_raw_split_reads_all_videos_and_lists_splits(tmp_path):
  train = tmp_path / 'imigue_skeleton_train'
  write_raw_video(train, '0002', raw_frames(5), ['3,0,1'])
  write_raw_video(train, '0001', raw_frames(5), ['4,0,4', '6,1,2'])
  write_raw_video(tmp_path / 'imigue_skeleton_test', '0003', raw_frames(3), ['7,0,2'])
  assert imigue.raw_splits(tmp_path) == ['train', 'test']
  clips = imigue.read_raw_split(tmp_path, 'train')
  assert [(c.clip_id, c.label) for c in clips] == [('0001_0', 3), ('0001_1', 5), ('0002_0', 2)]
  with pytest.raises(DataFormatError, match='imigue_skeleton_validate: split folder not found'):
    imigue.read_raw_split(tmp_path, 'validation')
  with pytest.raises(ValueError, match='unknown iMiGUE split'):
    imigue.read_raw_split(tmp_path, 'dev')


def _csv_rows(frames: np.ndarray) -> list[str]:
  return [','.join([str(i)] + [f'{v:g}' for v in f.reshape(-1)]) for i, f in enumerate(frames)]


@pytest.mark.parametrize('rows_edit, labels, match', [
    (None, ['5,0,10'], r'0001_label.csv: row 1: clip frames 0..10 are outside the video'),
    (None, ['5,0,2', '5,-1,2'], r'0001_label.csv: row 2: clip frames -1..2 are outside'),
    (None, ['5,6,2'], r'0001_label.csv: row 1: start frame 6 is after end frame 2'),
    (None, ['33,0,2'], r'0001_label.csv: row 1: gesture id 33 is not one of 1..32 or 99'),
    (None, ['0,0,2'], r'0001_label.csv: row 1: gesture id 0'),
    (None, ['5,0'], r'0001_label.csv: row 1 has 2 columns, expected 3'),
    (None, ['5,0,2', 'a,b,c'], r'0001_label.csv: row 2: .* is not three integers'),
    (lambda r: r[:3] + [r[3].rsplit(',', 40)[0]] + r[4:],
     ['5,0,2'], r'0001_light_hand.csv: row 4 has 66 columns, expected 106'),
    (lambda r: r[:-1] + [r[-1][:50]], ['5,0,2'], r'0001_light_hand.csv: row 10 has \d+ columns'),
    (lambda r: [x + ',7' for x in r], ['5,0,2'], r'row 1 has 107 columns, expected 106'),
    (lambda r: r[:2] + [r[2].replace(',0.5', ',abc', 1)] + r[3:], ['5,0,2'],
     r"0001_light_hand.csv: row 3, column 3: 'abc' is not a number"),
    (lambda r: r[:5] + [r[5].replace(',0.5', ',nan', 1)] + r[6:], ['5,0,2'],
     r'0001_light_hand.csv: row 6, column 3: NaN or inf'),
    (lambda r: r[:7] + [r[7].replace(',0.5', ',inf', 2)] + r[8:], ['5,0,2'],
     r'0001_light_hand.csv: row 8, column 3: NaN or inf'),
    (lambda r: r[:4] + [''] + r[4:], ['5,0,2'], r'0001_light_hand.csv: row 5 is empty'),
    (lambda r: [], ['5,0,2'], r'0001_light_hand.csv: no rows'),
])
def test_imigue_raw_malformed_files_name_file_and_row(tmp_path, rows_edit, labels, match):
  folder = write_raw_video(tmp_path, '0001', raw_frames(10), labels)
  if rows_edit is not None:
    rows = rows_edit(_csv_rows(raw_frames(10)))
    (folder / '0001_light_hand.csv').write_text('\n'.join(rows))
  with pytest.raises(DataFormatError, match=match):
    imigue.read_raw_video(folder)


def test_imigue_raw_missing_files(tmp_path):
  folder = write_raw_video(tmp_path, '0001', raw_frames(3), ['5,0,2'])
  (folder / '0001_label.csv').unlink()
  with pytest.raises(DataFormatError, match='0001_label.csv: label file not found'):
    imigue.read_raw_video(folder)


# ---------------------------------------------------------------------------------------------
# iMiGUE processed arrays (Section 1b).


def processed_sample(length: int, t: int = 90, persons: int = 1, scale: float = 1.0
                     ) -> np.ndarray:
  """(3, T, 22, M) sample with `length` non-zero frames, zero-padded at the end."""
  s = np.zeros((3, t, 22, persons), np.float32)
  frame = np.arange(1, length + 1, dtype=np.float32)[:, None, None]
  s[0, :length] = 10 * frame + np.arange(22)[None, :, None]
  s[1, :length] = 500.0
  s[2, :length] = 0.5 * scale
  return s


def write_processed(root: pathlib.Path, prefix: str, data: np.ndarray, names, labels) -> None:
  root.mkdir(parents=True, exist_ok=True)
  np.save(root / f'{prefix}_data.npy', data)
  with open(root / f'{prefix}_label.pkl', 'wb') as f:
    pickle.dump((names, labels), f)


def test_imigue_processed_recovers_length_from_padding(tmp_path):
  inner_gap = processed_sample(4)
  inner_gap[:, 1] = 0  # an all-zero frame inside the clip is data, not padding
  data = np.stack([processed_sample(90), processed_sample(3), inner_gap])
  write_processed(tmp_path, 'valid', data, ['0001_0', '0001_1', '0002_0'], [0, 31, 7])
  assert imigue.processed_splits(tmp_path) == ['validation']
  clips = imigue.read_processed_split(tmp_path, 'validation')
  assert [c.clip_id for c in clips] == ['0001_0', '0001_1', '0002_0']
  assert [c.label for c in clips] == [0, 31, 7]
  assert [c.num_frames for c in clips] == [90, 3, 4]
  np.testing.assert_array_equal(clips[1].keypoints[:, 5, 0], [15, 25, 35])
  np.testing.assert_array_equal(clips[1].keypoints[:, 5, 1], [500] * 3)
  np.testing.assert_array_equal(clips[1].confidence, np.full((3, 22), 0.5, np.float32))
  np.testing.assert_array_equal(clips[2].confidence[:, 0], [0.5, 0, 0.5, 0.5])
  assert clips[2].meta == {'video': '0002', 'sample_index': 2, 'split': 'validation'}


def test_imigue_processed_picks_highest_score_person(tmp_path):
  sample = np.concatenate([processed_sample(5, scale=0.2), processed_sample(5, scale=1.8)], -1)
  sample[0, :, :, 1] += 1000
  write_processed(tmp_path, 'train', sample[None], ['0001_0'], [3])
  (clip,) = imigue.read_processed_split(tmp_path, 'train')
  assert clip.keypoints[0, 0, 0] == 1010 and clip.confidence[0, 0] == pytest.approx(0.9)


@pytest.mark.parametrize('edit, match', [
    (lambda d, n, l: (d, n + ['0009_9'], l + [1]), r'train_label.pkl: 3 samples, but the data '
     r'array has 2'),
    (lambda d, n, l: (d, n, l[:1]), r'train_label.pkl: 2 sample names but 1 labels'),
    (lambda d, n, l: (d, ['0001_0', '0001_0'], l), r"train_label.pkl: duplicate clip id "
     r"'0001_0'"),
    (lambda d, n, l: (d, n, [3, 32]), r"train_label.pkl sample 1 \('0001_1'\): label 32 outside "
     r'0..31'),
    (lambda d, n, l: (d, n, [-1, 3]), r"sample 0 \('0001_0'\): label -1 outside"),
    (lambda d, n, l: (d, n, ['3', 3]), r"sample 0 .*: label must be an integer, got '3'"),
    (lambda d, n, l: (np.concatenate([d[:1], np.zeros_like(d[:1])]), n, l),
     r"train_data.npy sample 1 \('0001_1'\): empty clip"),
    (lambda d, n, l: (np.where(np.arange(90)[None, None, :, None, None] == 2, np.nan, d), n, l),
     r"train_data.npy sample 0 \('0001_0'\): NaN or inf at channel 0, frame 2"),
    (lambda d, n, l: (d[:, :, :, :20], n, l), r'train_data.npy: expected shape \(N, 3, T, 22, '
     r'M\), got \(2, 3, 90, 20, 1\)'),
])
def test_imigue_processed_malformed(tmp_path, edit, match):
  data = np.stack([processed_sample(5), processed_sample(7)])
  data, names, labels = edit(data, ['0001_0', '0001_1'], [3, 4])
  write_processed(tmp_path, 'train', data.astype(np.float32), names, labels)
  with pytest.raises(DataFormatError, match=match):
    imigue.read_processed_split(tmp_path, 'train')


def test_imigue_processed_truncated_and_missing_files(tmp_path):
  write_processed(tmp_path, 'train', processed_sample(5)[None], ['0001_0'], [3])
  (tmp_path / 'train_label.pkl').write_bytes((tmp_path / 'train_label.pkl').read_bytes()[:10])
  with pytest.raises(DataFormatError, match='train_label.pkl: not a readable pickle'):
    imigue.read_processed_split(tmp_path, 'train')
  data_bytes = (tmp_path / 'train_data.npy').read_bytes()
  (tmp_path / 'train_data.npy').write_bytes(data_bytes[:len(data_bytes) // 2])
  with pytest.raises(DataFormatError, match=r'train_data.npy: not a readable .npy array'):
    imigue.read_processed_split(tmp_path, 'train')
  with pytest.raises(DataFormatError, match='test_data.npy: data file not found'):
    imigue.read_processed_split(tmp_path, 'test')
  (tmp_path / 'train_label.pkl').unlink()
  write_processed(tmp_path / 'b', 'train', processed_sample(5)[None], ['0001_0'], [3])
  (tmp_path / 'b' / 'train_label.pkl').unlink()
  with pytest.raises(DataFormatError, match='train_label.pkl: file not found'):
    imigue.read_processed_split(tmp_path / 'b', 'train')


# ---------------------------------------------------------------------------------------------
# PYSKL pickles (Section 3).


def pyskl_clip(frame_dir: str, label: int, t: int = 4, v: int = 17, persons: int = 1,
               dims: int = 2, score: bool = True) -> dict:
  kp = np.arange(persons * t * v * dims, dtype=np.float32).reshape(persons, t, v, dims) + 1
  ann = {'frame_dir': frame_dir, 'label': label, 'total_frames': t, 'img_shape': (1080, 1920),
         'original_shape': (1080, 1920), 'keypoint': kp}
  if score:
    ann['keypoint_score'] = np.full((persons, t, v), 0.9, np.float32)
  return ann


def write_pickle(path: pathlib.Path, obj) -> pathlib.Path:
  with open(path, 'wb') as f:
    pickle.dump(obj, f)
  return path


def test_pyskl_dict_split_order_and_best_person(tmp_path):
  two = pyskl_clip('b', 2, persons=2)
  two['keypoint_score'][0] = 0.1
  data = {'split': {'xsub_train': ['c', 'a'], 'xsub_val': ['b']},
          'annotations': [pyskl_clip('a', 0), two, pyskl_clip('c', 5, t=7)]}
  path = write_pickle(tmp_path / 'data.pkl', data)
  train = pyskl.read_pyskl(path, layout='coco17', split='xsub_train')
  assert [(c.clip_id, c.label, c.num_frames) for c in train] == [('c', 5, 7), ('a', 0, 4)]
  (val,) = pyskl.read_pyskl(path, layout='coco17', split='xsub_val', num_classes=3)
  np.testing.assert_array_equal(val.keypoints, two['keypoint'][1])
  assert val.meta['person'] == 1 and val.meta['num_persons'] == 2
  assert val.meta['img_shape'] == (1080, 1920)
  assert len(pyskl.read_pyskl(path, layout='coco17')) == 3


def test_pyskl_bare_list_3d_gets_presence_confidence(tmp_path):
  ann = pyskl_clip('s001', 9, t=3, v=25, dims=3, score=False)
  ann['keypoint'][0, 1, 4] = 0
  path = write_pickle(tmp_path / 'ntu.pkl', [ann])
  (clip,) = pyskl.read_pyskl(path, layout='kinect25')
  assert clip.keypoints.shape == (3, 25, 3)
  expected = np.ones((3, 25), np.float32)
  expected[1, 4] = 0
  np.testing.assert_array_equal(clip.confidence, expected)
  with pytest.raises(DataFormatError, match=r"ntu.pkl: split 'train' requested, but the file "
                     'is a bare list'):
    pyskl.read_pyskl(path, layout='kinect25', split='train')


def _bad(**changes) -> dict:
  ann = pyskl_clip('x1', 1)
  for key, value in changes.items():
    if value is None:
      del ann[key]
    else:
      ann[key] = value
  return ann


@pytest.mark.parametrize('ann, kwargs, match', [
    (pyskl_clip('x1', 1, v=18), {}, r"18 joints, but the layout 'coco17' has 17"),
    (pyskl_clip('x1', 1, dims=3), {}, r"3 coordinate channels, but the layout 'coco17' is 2D"),
    (_bad(keypoint_score=None), {}, r'2D keypoints need a "keypoint_score"'),
    (_bad(keypoint_score=np.ones((1, 3, 17))), {}, r'keypoint_score shape \(1, 3, 17\) does '
     r'not match'),
    (_bad(total_frames=9), {}, r'total_frames is 9 but keypoint has 4 frames'),
    (_bad(label=60), {'num_classes': 60}, r'label 60 outside 0..59'),
    (_bad(label=None), {}, r'no "label"'),
    (_bad(keypoint=np.zeros((1, 0, 17, 2)), keypoint_score=np.zeros((1, 0, 17)),
          total_frames=0), {}, r'empty clip'),
    (_bad(keypoint=np.full((1, 4, 17, 2), np.inf)), {}, r'NaN or inf in keypoint of person 0 at '
     r'frame 0, joint 0'),
])
def test_pyskl_malformed_clips(tmp_path, ann, kwargs, match):
  path = write_pickle(tmp_path / 'bad.pkl', [ann])
  with pytest.raises(DataFormatError, match=r"bad.pkl \[annotation 0\] \(clip 'x1'\): " + match):
    pyskl.read_pyskl(path, layout='coco17', **kwargs)


def test_pyskl_malformed_files(tmp_path):
  dup = write_pickle(tmp_path / 'dup.pkl', [pyskl_clip('a', 0), pyskl_clip('a', 1)])
  with pytest.raises(DataFormatError, match=r"dup.pkl: duplicate clip id 'a' \(entries 0 and 1"):
    pyskl.read_pyskl(dup, layout='coco17')
  orphan = write_pickle(tmp_path / 'orphan.pkl', {'split': {'train': ['a', 'zz']},
                                                  'annotations': [pyskl_clip('a', 0)]})
  with pytest.raises(DataFormatError, match=r"orphan.pkl: split 'train' lists clip 'zz' that "
                     'has no skeleton'):
    pyskl.read_pyskl(orphan, layout='coco17', split='train')
  with pytest.raises(DataFormatError, match=r"orphan.pkl: no split 'val'; the file has splits "
                     r"\['train'\]"):
    pyskl.read_pyskl(orphan, layout='coco17', split='val')
  truncated = tmp_path / 'trunc.pkl'
  truncated.write_bytes(dup.read_bytes()[:200])
  with pytest.raises(DataFormatError, match='trunc.pkl: not a readable pickle'):
    pyskl.read_pyskl(truncated, layout='coco17')
  with pytest.raises(DataFormatError, match='missing.pkl: file not found'):
    pyskl.read_pyskl(tmp_path / 'missing.pkl', layout='coco17')
  no_id = write_pickle(tmp_path / 'no_id.pkl', [_bad(frame_dir=None)])
  with pytest.raises(DataFormatError, match=r'no_id.pkl \[annotation 0\]: clip has no '
                     '"frame_dir"'):
    pyskl.read_pyskl(no_id, layout='coco17')
  nodict = write_pickle(tmp_path / 'nodict.pkl', {'split': {}})
  with pytest.raises(DataFormatError, match='nodict.pkl: a PYSKL dict needs an "annotations"'):
    pyskl.read_pyskl(nodict, layout='coco17')


# ---------------------------------------------------------------------------------------------
# MA-52 (Section 2).


def test_ma52_body_label_ranges():
  expected = {0: 0, 4: 0, 5: 1, 10: 1, 11: 2, 23: 2, 24: 3, 31: 3, 32: 4, 37: 4, 38: 5, 47: 5,
              48: 6, 51: 6}
  assert {a: ma52.ma52_body_label(a) for a in expected} == expected
  assert len(ma52.MA52_BODY_GROUPS) == 7 and len(ma52.MA52_CLASSES) == 52
  np.testing.assert_array_equal(np.bincount(ma52.MA52_ACTION_TO_BODY), [5, 6, 13, 8, 6, 10, 4])
  with pytest.raises(ValueError, match='MA-52 action label 52 outside 0..51'):
    ma52.ma52_body_label(52)


def write_ma52(root: pathlib.Path, prefix: str, entries: list[tuple[str, int]],
               skeletons: list[tuple[str, int]], newline: str = '\r\n',
               final_newline: bool = False) -> None:
  root.mkdir(parents=True, exist_ok=True)
  text = newline.join(f'{name}.mp4 {label}' for name, label in entries)
  (root / f'{prefix}_list_videos.txt').write_bytes(
      (text + (newline if final_newline else '')).encode())
  anns = [pyskl_clip(name, label, t=3 + i, v=28) for i, (name, label) in enumerate(skeletons)]
  write_pickle(root / f'MA52_{prefix}.pkl', anns)


@pytest.mark.parametrize('newline, final_newline', [('\r\n', False), ('\n', True),
                                                    ('\r\n', True)])
def test_ma52_split_joins_list_and_pickle(tmp_path, newline, final_newline):
  entries = [('0003_01_0002', 37), ('0003_01_0001', 5), ('0004_02_0001', 51)]
  write_ma52(tmp_path, 'train', entries, [entries[1], entries[2], entries[0]], newline,
             final_newline)
  clips = ma52.read_ma52_split(tmp_path, 'train')
  # Named as listed (the name the benchmark's prediction.csv carries), joined on the stem.
  assert [c.clip_id for c in clips] == ['0003_01_0002.mp4', '0003_01_0001.mp4',
                                        '0004_02_0001.mp4']
  assert [c.label for c in clips] == [37, 5, 51]
  assert [c.meta['body_label'] for c in clips] == [4, 1, 6]
  assert [c.meta['list_line'] for c in clips] == [1, 2, 3]
  assert [c.num_frames for c in clips] == [5, 3, 4]
  assert clips[0].layout == 'openpose28' and clips[0].keypoints.shape == (5, 28, 2)


def test_ma52_test_split_is_unlabelled(tmp_path):
  write_ma52(tmp_path, 'test', [('test0000', 0), ('test0001', 0)],
             [('test0001', 0), ('test0000', 0)])
  clips = ma52.read_ma52_split(tmp_path, 'test')
  assert [(c.clip_id, c.label, c.meta['body_label']) for c in clips] == [
      ('test0000.mp4', -1, -1), ('test0001.mp4', -1, -1)]
  assert ma52.available_splits(tmp_path) == ['test']


def test_ma52_label_names(tmp_path):
  assert ma52.class_names(tmp_path) == list(ma52.MA52_CLASSES)
  lines = [f'{i}\t{name.upper()}' for i, name in enumerate(ma52.MA52_CLASSES)]
  (tmp_path / 'label_name.txt').write_bytes('\r\n'.join(lines).encode())
  names = ma52.class_names(tmp_path)
  assert names[0] == 'SHAKING BODY' and names[51] == 'SCRATCHING FEET'
  (tmp_path / 'label_name.txt').write_text('\n'.join(lines[:51]))
  with pytest.raises(DataFormatError, match='label_name.txt: 51 class names, expected 52'):
    ma52.class_names(tmp_path)
  (tmp_path / 'label_name.txt').write_text('\n'.join(lines[:3] + ['3 shaking head']))
  with pytest.raises(DataFormatError, match='label_name.txt: line 4: expected'):
    ma52.class_names(tmp_path)


@pytest.mark.parametrize('entries, skeletons, match', [
    ([('a', 1), ('b', 2)], [('a', 1)],
     r"train_list_videos.txt: line 2: clip 'b.mp4' has no skeleton in .*MA52_train.pkl"),
    ([('a', 1)], [('a', 1), ('c', 3)],
     r"MA52_train.pkl \[annotation 1\]: skeleton 'c' has no entry in .*train_list_videos.txt"),
    ([('a', 1), ('b', 2)], [('a', 1), ('b', 3)],
     r"train_list_videos.txt: line 2: clip 'b.mp4' has label 2, but .*MA52_train.pkl "
     r"\[annotation "
     r'1\] says 3'),
    ([('a', 1), ('b', 2), ('a', 1)], [('a', 1), ('b', 2)],
     r"train_list_videos.txt: line 3: duplicate clip 'a.mp4' \(first on line 1\)"),
    ([('a', 1), ('b', 2)], [('a', 1), ('b', 2), ('a', 1)],
     r"MA52_train.pkl: duplicate clip id 'a' \(entries 0 and 2\)"),
    ([('a', 1), ('b', 52)], [('a', 1), ('b', 2)],
     r'train_list_videos.txt: line 2: label 52 outside 0..51'),
    ([('a', 1), ('b', 2)], [('a', 1), ('b', 60)],
     r"MA52_train.pkl \[annotation 1\] \(clip 'b.mp4'\): label 60 outside 0..51"),
])
def test_ma52_malformed(tmp_path, entries, skeletons, match):
  write_ma52(tmp_path, 'train', entries, skeletons)
  with pytest.raises(DataFormatError, match=match):
    ma52.read_ma52_split(tmp_path, 'train')


def test_ma52_malformed_list_lines_and_missing_files(tmp_path):
  write_ma52(tmp_path, 'val', [('a', 1)], [('a', 1)])
  (tmp_path / 'val_list_videos.txt').write_text('a.mp4 1\nb.mp4\t2\n')
  with pytest.raises(DataFormatError, match=r"val_list_videos.txt: line 2: expected "
                     r'"<file_name> <label>"'):
    ma52.read_ma52_split(tmp_path, 'validation')
  (tmp_path / 'val_list_videos.txt').write_text('a.mp4 one\n')
  with pytest.raises(DataFormatError, match=r"line 1: label 'one' is not an integer"):
    ma52.read_ma52_split(tmp_path, 'validation')
  (tmp_path / 'val_list_videos.txt').write_text('')
  with pytest.raises(DataFormatError, match='val_list_videos.txt: the list file is empty'):
    ma52.read_ma52_split(tmp_path, 'validation')
  with pytest.raises(DataFormatError, match='train_list_videos.txt: list file not found'):
    ma52.read_ma52_split(tmp_path, 'train')
  (tmp_path / 'val_list_videos.txt').write_text('a.mp4 1')
  (tmp_path / 'MA52_val.pkl').unlink()
  with pytest.raises(DataFormatError, match='MA52_val.pkl: file not found'):
    ma52.read_ma52_split(tmp_path, 'validation')


# ---------------------------------------------------------------------------------------------
# NW-UCLA (Section 5).


def write_nwucla(folder: pathlib.Path, name: str, label: int, frames: int = 3,
                 override: dict | None = None) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  skel = (np.arange(frames * 60, dtype=np.float64).reshape(frames, 20, 3) / 100).tolist()
  data = {'file_name': name, 'label': label, 'skeletons': skel, **(override or {})}
  path = folder / f'{name}.json'
  path.write_text(json.dumps(data))
  return path


def test_nwucla_fixture_clips_and_cross_view_split(tmp_path):
  sqe = tmp_path / 'all_sqe'
  write_nwucla(sqe, 'a01_s01_e00_v01', 1)
  write_nwucla(sqe, 'a12_s10_e04_v02', 10, frames=5)
  write_nwucla(sqe, 'a08_s02_e01_v03', 7, override={'skeletons': [[[0, 0, 0]] + [[1, 2, 3]] * 19]})
  train = nwucla.read_nwucla(tmp_path, 'train')
  assert [(c.clip_id, c.label, c.num_frames) for c in train] == [
      ('a01_s01_e00_v01', 0, 3), ('a12_s10_e04_v02', 9, 5)]
  assert train[1].meta == {'action_id': 12, 'subject': 10, 'take': 4, 'view': 2}
  (test,) = nwucla.read_nwucla(sqe, 'test')
  assert test.label == 6 and test.layout == 'kinect20'
  np.testing.assert_array_equal(test.keypoints[0, 1], [1, 2, 3])
  np.testing.assert_array_equal(test.confidence, [[0] + [1] * 19])  # joint 0 is all-zero


@pytest.mark.parametrize('name, label, override, text_edit, match', [
    ('a01_s01_e00_v01', 1, {}, lambda t: t[:len(t) // 2], 'not valid JSON'),
    ('a01_s01_e00_v01', 1, {'skeletons': [[[0, 0, 1]] * 19]}, None,
     r'skeletons must be T x 20 x 3, got shape \(1, 19, 3\)'),
    ('a01_s01_e00_v01', 1, {'skeletons': [[[0, 0, 1]] * 20, [[0, 1]] * 20]}, None,
     'skeletons is not a T x 20 x 3 number array'),
    ('a01_s01_e00_v01', 1, {'skeletons': [[[1, 1, 1]] * 19 + [[1, float('nan'), 1]]]}, None,
     'NaN or inf at frame 0, joint 19'),
    ('a01_s01_e00_v01', 1, {'skeletons': []}, None, r'empty clip'),
    ('a01_s01_e00_v01', 11, {}, None, 'label 11 outside 1..10'),
    ('a01_s01_e00_v01', 0, {}, None, 'label 0 outside 1..10'),
    ('a01_s01_e00_v01', 2, {}, None, 'label 2 is action 2, but the file name says action 1'),
    ('a01_s01_e00_v01', 1, {'file_name': 'a01_s01_e00_v02'}, None,
     "file_name 'a01_s01_e00_v02' does not match"),
    ('a01_s01_e00_v01', 1, {'label': '1'}, None, 'label must be an integer'),
    ('a07_s01_e00_v01', 1, {}, None, 'action id 7'),
    ('a01_s01_e00_v04', 1, {}, None, 'view 4'),
])
def test_nwucla_malformed(tmp_path, name, label, override, text_edit, match):
  path = write_nwucla(tmp_path, name, label, override=override)
  if text_edit is not None:
    path.write_text(text_edit(path.read_text()))
  with pytest.raises(DataFormatError, match=name + r'.*' + match):
    nwucla.read_nwucla_file(path)


def test_nwucla_missing_files(tmp_path):
  with pytest.raises(DataFormatError, match='no aAA_sSS_eEE_vVV.json files'):
    nwucla.read_nwucla(tmp_path, 'train')
  write_nwucla(tmp_path, 'a01_s01_e00_v03', 1)
  with pytest.raises(DataFormatError, match=r"no clips of views \(1, 2\) for split 'train'"):
    nwucla.read_nwucla(tmp_path, 'train')
  (tmp_path / 'notes.json').write_text('{}')
  with pytest.raises(DataFormatError, match='notes: file name is not of the form'):
    nwucla.read_nwucla(tmp_path, 'test')


@pytest.mark.skipif(not NWUCLA_ROOT.is_dir(), reason=f'{NWUCLA_ROOT} not present')
def test_nwucla_real_dataset_matches_index():
  with open(NWUCLA_ROOT / 'index.csv') as f:
    index = {row['file_name']: row for row in csv.DictReader(f)}
  for split, count in (('train', 1020), ('test', 464)):
    clips = nwucla.read_nwucla(NWUCLA_ROOT, split)
    assert len(clips) == count
    for c in clips:
      row = index[c.clip_id]
      assert row['split_cross_view'] == split
      assert (c.num_frames, c.label, c.meta['view']) == (
          int(row['n_frames']), int(row['label0']), int(row['view']))
      assert c.keypoints.shape == (c.num_frames, 20, 3)
  assert min(int(r['n_frames']) for r in index.values()) == 1


# ---------------------------------------------------------------------------------------------
# OpenPose per-frame JSON (Section 4).


def op_person(offset: float, score: float = 0.8, hands: bool = True) -> dict:
  pose = np.zeros((25, 3))
  pose[:, 0], pose[:, 1], pose[:, 2] = offset + np.arange(25), offset + 100, score
  person = {'person_id': [-1], 'pose_keypoints_2d': pose.reshape(-1).tolist(),
            'face_keypoints_2d': [0.0] * 210}
  for side, base in (('right', 500), ('left', 700)):
    hand = np.zeros((21, 3))
    hand[:, 0], hand[:, 1], hand[:, 2] = offset + base + np.arange(21), 50, 0.6
    person[f'hand_{side}_keypoints_2d'] = hand.reshape(-1).tolist() if hands else []
  return person


def write_op_frames(folder: pathlib.Path, video: str, people_per_frame: list[list[dict]],
                    first: int = 0) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for i, people in enumerate(people_per_frame):
    (folder / f'{video}_{first + i:012d}_keypoints.json').write_text(
        json.dumps({'version': 1.3, 'people': people}))


def test_openpose_body25_empty_frames_and_best_person(tmp_path):
  write_op_frames(tmp_path, 'my_video', [[op_person(0)], [], [op_person(10, 0.3),
                                                             op_person(20, 0.9)], [op_person(30)]])
  clip = openpose_json.read_openpose_video(tmp_path)
  assert clip.clip_id == 'my_video' and clip.layout == 'body25' and clip.label == -1
  assert clip.keypoints.shape == (4, 25, 2)
  np.testing.assert_array_equal(clip.keypoints[:, 3, 0], [3, 0, 23, 33])
  np.testing.assert_allclose(clip.confidence[:, 0], [0.8, 0, 0.9, 0.8])
  assert not clip.keypoints[1].any()
  assert clip.meta == {'video': 'my_video', 'first_frame': 0, 'empty_frames': [1]}


def test_openpose_hands_give_finger_tips(tmp_path):
  write_op_frames(tmp_path, 'v', [[op_person(0)], [op_person(1000)]], first=7)
  clip35 = openpose_json.read_openpose_video(tmp_path, 'v', layout='openpose35', label=3)
  assert clip35.keypoints.shape == (2, 35, 2) and clip35.label == 3
  np.testing.assert_array_equal(clip35.keypoints[0, 25:30, 0], 500 + np.array([4, 8, 12, 16, 20]))
  np.testing.assert_array_equal(clip35.keypoints[1, 30:35, 0], 1700 + np.array([4, 8, 12, 16,
                                                                                20]))
  np.testing.assert_allclose(clip35.confidence[0, 25:], 0.6)
  clip22 = openpose_json.read_openpose_video(tmp_path, layout='openpose22', clip_id='c')
  index = get_layout('openpose22').map_from(get_layout('openpose35'))
  np.testing.assert_array_equal(clip22.keypoints, clip35.keypoints[:, index])
  assert clip22.clip_id == 'c' and clip22.meta['first_frame'] == 7


def test_openpose_folder_with_several_videos(tmp_path):
  write_op_frames(tmp_path, 'b', [[op_person(0)]])
  write_op_frames(tmp_path, 'a_clip', [[op_person(0)], [op_person(1)]])
  clips = openpose_json.read_openpose_folder(tmp_path)
  assert [(c.clip_id, c.num_frames) for c in clips] == [('a_clip', 2), ('b', 1)]
  with pytest.raises(ValueError, match='holds 2 videos'):
    openpose_json.read_openpose_video(tmp_path)
  with pytest.raises(ValueError, match="layout 'kinect20' is 3D"):
    openpose_json.read_openpose_video(tmp_path, 'b', layout='kinect20')


@pytest.mark.parametrize('frames, edit, kwargs, match', [
    ([[op_person(0)]] * 2, lambda d: (d / 'v_000000000001_keypoints.json').unlink()
     or (d / 'v_000000000003_keypoints.json').write_text('{"people": []}'), {},
     r"frame 1 of video 'v' is missing \(v_000000000001_keypoints.json"),
    ([[op_person(0)]] * 2, lambda d: (d / 'v_000000000001_keypoints.json').write_text(
        '{"people": [{"pose_k'), {}, r'v_000000000001_keypoints.json: not valid JSON'),
    ([[op_person(0)]] * 2, lambda d: (d / 'v_000000000001_keypoints.json').write_text(
        json.dumps({'people': [{'pose_keypoints_2d': [1.0] * 72}]})), {},
     r'v_000000000001_keypoints.json: people\[0\].pose_keypoints_2d has 72 values, expected 75'),
    ([[op_person(0)]] * 2, lambda d: (d / 'v_000000000000_keypoints.json').write_text(
        json.dumps({'people': [{'pose_keypoints_2d': [1.0] * 7 + [float('nan')] + [1.0] * 67}]})),
     {}, r'v_000000000000_keypoints.json: people\[0\].pose_keypoints_2d: NaN or inf at joint 2'),
    ([[], []], None, {}, r"empty clip: nobody is detected in any frame of video 'v'"),
    ([[op_person(0, hands=False)]], None, {'layout': 'openpose22'},
     r'people\[0\] has no hand_right_keypoints_2d \(run OpenPose with --hand'),
    ([[op_person(0)]], lambda d: (d / 'v_000000000000_keypoints.json').write_text(
        '{"people": [{"face_keypoints_2d": []}]}'), {},
     r'v_000000000000_keypoints.json: people\[0\].pose_keypoints_2d is missing or not a list'),
    ([[op_person(0)]], lambda d: (d / 'v_000000000000_keypoints.json').write_text('[]'), {},
     r'v_000000000000_keypoints.json: expected an object with a "people" list'),
    ([[op_person(0)]], lambda d: (d / 'v_12_keypoints.json').write_text('{}'), {},
     r'v_12_keypoints.json: expected a file name <video>_<frame:012d>_keypoints.json'),
])
def test_openpose_malformed(tmp_path, frames, edit, kwargs, match):
  write_op_frames(tmp_path, 'v', frames)
  if edit is not None:
    edit(tmp_path)
  with pytest.raises(DataFormatError, match=match):
    openpose_json.read_openpose_video(tmp_path, 'v', **kwargs)


def test_openpose_missing_folder_and_video(tmp_path):
  with pytest.raises(DataFormatError, match='OpenPose output folder not found'):
    openpose_json.read_openpose_video(tmp_path / 'nope')
  with pytest.raises(DataFormatError, match='no <video>_<frame:012d>_keypoints.json files'):
    openpose_json.read_openpose_video(tmp_path)
  write_op_frames(tmp_path, 'v', [[op_person(0)]])
  with pytest.raises(DataFormatError, match=r"no frame files for video 'w'; found \['v'\]"):
    openpose_json.read_openpose_video(tmp_path, 'w')

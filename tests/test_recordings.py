"""A user's own recordings for --mode=predict (micro_dualnet_jax/data/recordings.py): the
messages of inputs that cannot be read, without a trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from micro_dualnet_jax.data import recordings
from micro_dualnet_jax.data.clip import DataFormatError


def test_an_empty_openpose_folder_gets_its_error_and_no_conversion_note(tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataFormatError) as error:
    recordings.load_recordings(tmp_path / 'empty', 'openpose22')
  assert str(error.value) == (f'{tmp_path / "empty"}: no <video>_<frame:012d>_keypoints.json '
                              'files')
  assert capsys.readouterr().out == ''
  # A folder with frames is read, then the conversion from OpenPose's joints is noted.
  (tmp_path / 'one').mkdir()
  person = {'pose_keypoints_2d': np.tile([100.0, 200.0, 0.9], 25).tolist(),
            'hand_right_keypoints_2d': np.tile([90.0, 210.0, 0.8], 21).tolist(),
            'hand_left_keypoints_2d': np.tile([110.0, 210.0, 0.8], 21).tolist()}
  (tmp_path / 'one' / 'cam_000000000000_keypoints.json').write_text(
      json.dumps({'people': [person]}))
  [clip] = recordings.load_recordings(tmp_path / 'one', 'openpose22')
  assert clip.keypoints.shape == (1, 22, 2)
  assert capsys.readouterr().out == (
      f"note: {tmp_path / 'one'} (OpenPose JSON): converting joint layout 'openpose35' to the "
      "model's 'openpose22' by joint name\n")


def test_a_transposed_array_is_refused_with_the_order_that_fits(tmp_path):
  frames = np.random.default_rng(0).uniform(1, 100, (200, 22, 3)).astype(np.float32)
  frames[..., 2] /= 100.0   # confidences in [0, 1]
  np.save(tmp_path / 'swapped.npy', frames.transpose(1, 2, 0))   # (22, 3, 200)
  with pytest.raises(DataFormatError) as error:
    recordings.load_recordings(tmp_path / 'swapped.npy', 'openpose22')
  assert str(error.value).endswith(
      '. Its axes may be in another order: np.transpose(array, (2, 0, 1)) gives (200, 22, 3), '
      "(T, V, C) in layout 'openpose22'")
  assert str(error.value).startswith(f'{tmp_path / "swapped.npy"}: 3 joints matches no ')
  # The order it names reads back the original frames.
  np.save(tmp_path / 'fixed.npy', np.transpose(np.load(tmp_path / 'swapped.npy'), (2, 0, 1)))
  [clip] = recordings.load_recordings(tmp_path / 'fixed.npy', 'openpose22')
  np.testing.assert_array_equal(clip.keypoints, frames[..., :2])
  # An array no order of whose axes fits the layout keeps the plain message.
  np.save(tmp_path / 'odd.npy', np.ones((50, 19, 3), np.float32))
  with pytest.raises(DataFormatError) as error:
    recordings.load_recordings(tmp_path / 'odd.npy', 'openpose22')
  assert 'axes' not in str(error.value)

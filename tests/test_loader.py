"""Host loader: deterministic epoch shuffles, process sharding, padding, exact evaluation."""

import numpy as np
import pytest

from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.pipeline.loader import Loader


def make_source(n=10, v=4, c=2, lengths=None):
  lengths = lengths or [3 + (i % 5) for i in range(n)]
  return [{'keypoints': np.full((t, v, c), i + 1, np.float32),
           'confidence': np.ones((t, v), np.float32), 'label': i % 3, 'num_frames': t,
           'clip_id': f'clip{i}'} for i, t in enumerate(lengths)]


def loader(source, **kwargs):
  args = dict(global_batch_size=4, max_frames=6, num_joints=4, coord_dims=2, seed=0,
              num_classes=3)
  return Loader(source, **{**args, **kwargs})


def test_batches_have_fixed_shapes_and_padding():
  batch = next(loader(make_source()).train_batches())
  assert batch['keypoints'].shape == (4, 6, 4, 2) and batch['confidence'].shape == (4, 6, 4)
  for row in range(4):
    n, value = batch['num_frames'][row], batch['index'][row] + 1
    assert np.all(batch['keypoints'][row, :n] == value)
    assert np.all(batch['keypoints'][row, n:] == 0) and np.all(batch['confidence'][row, n:] == 0)
  assert np.all(batch['weight'] == 1)


def test_every_row_holds_its_own_clip_and_label():
  """Row by row, over several epochs: keypoints, confidence, length and label are those of the
  source record the row's index names (a label/clip mix-up fails here)."""
  rng = np.random.default_rng(0)
  source = []
  for i in range(11):
    t = 2 + i % 5
    source.append({'keypoints': rng.normal(size=(t, 4, 2)).astype(np.float32),
                   'confidence': rng.uniform(0.1, 1.0, size=(t, 4)).astype(np.float32),
                   'label': int(rng.integers(3)), 'num_frames': t, 'clip_id': f'c{i}'})
  data = loader(source)
  stream = data.train_batches()
  for step in range(3 * data.steps_per_epoch):
    batch = next(stream)
    np.testing.assert_array_equal(batch['index'], data.train_indices(step))
    for row, index in enumerate(batch['index']):
      record, n = source[index], source[index]['num_frames']
      assert batch['label'][row] == record['label']
      assert batch['num_frames'][row] == n
      np.testing.assert_array_equal(batch['keypoints'][row, :n], record['keypoints'])
      np.testing.assert_array_equal(batch['confidence'][row, :n], record['confidence'])
  seen = [(int(i), int(l)) for b in data.eval_batches() for i, l, w in
          zip(b['index'], b['label'], b['weight']) if w > 0]
  assert seen == [(i, r['label']) for i, r in enumerate(source)]


def test_epochs_are_permutations_seeded_by_epoch():
  data = loader(make_source(n=12))
  assert data.steps_per_epoch == 3
  epoch0 = np.concatenate([data.train_indices(s) for s in range(3)])
  epoch1 = np.concatenate([data.train_indices(s) for s in range(3, 6)])
  assert sorted(epoch0) == list(range(12)) and sorted(epoch1) == list(range(12))
  assert not np.array_equal(epoch0, epoch1)
  again = loader(make_source(n=12))
  np.testing.assert_array_equal(again.train_indices(4), data.train_indices(4))
  other_seed = loader(make_source(n=12), seed=1)
  assert not np.array_equal(other_seed.train_indices(0), data.train_indices(0))
  # Starting the stream at step 4 gives exactly the batch an uninterrupted stream gives there.
  stream = data.train_batches()
  for _ in range(4):
    next(stream)
  np.testing.assert_array_equal(next(stream)['index'], next(data.train_batches(4))['index'])


def test_processes_split_each_global_batch():
  source = make_source(n=16)
  full = loader(source, global_batch_size=8)
  parts = [loader(source, global_batch_size=8, process_index=p, process_count=2)
           for p in range(2)]
  for step in range(5):
    joined = np.concatenate([p.train_indices(step) for p in parts])
    np.testing.assert_array_equal(joined, full.train_indices(step))
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    loader(source, global_batch_size=8, process_count=3)


@pytest.mark.parametrize('process_count', [1, 2])
def test_evaluation_sees_every_clip_exactly_once(process_count):
  source = make_source(n=11)
  seen = []
  for p in range(process_count):
    data = loader(source, process_index=p, process_count=process_count)
    assert data.eval_steps == 3
    for batch in data.eval_batches():
      assert batch['keypoints'].shape[0] == 4 // process_count
      seen.extend(batch['index'][batch['weight'] > 0].tolist())
      padded = batch['weight'] == 0
      assert np.all(batch['num_frames'][padded] == 0)
  assert sorted(seen) == list(range(11))


def test_long_clips_are_subsampled_not_cut():
  source = make_source(n=1, lengths=[12])
  source[0]['keypoints'] = np.arange(12, dtype=np.float32)[:, None, None] * np.ones((12, 4, 2))
  batch = next(loader(source, global_batch_size=1).eval_batches())
  assert batch['num_frames'][0] == 6
  np.testing.assert_array_equal(batch['keypoints'][0, :, 0, 0], [0, 2, 4, 6, 8, 10])


def test_bad_records_are_named():
  source = make_source(n=4)
  source[2]['label'] = 7
  with pytest.raises(DataFormatError, match=r"record 2 \(clip 'clip2'\): label 7 outside 0..2"):
    list(loader(source).eval_batches())
  source = make_source(n=4)
  source[1]['keypoints'] = np.zeros((3, 5, 2), np.float32)
  with pytest.raises(DataFormatError, match=r"clip 'clip1'.*\(T, 4, 2\)"):
    list(loader(source).eval_batches())
  with pytest.raises(DataFormatError, match='split is empty'):
    loader([])

"""Write pose clips into the plain folder format: one .npy per clip and labels.csv.

    python examples/clip_folder.py --out=my_gestures

docs/own_dataset.md trains, evaluates and predicts on such a folder. The clips here stand in for
yours: synthetic micro-actions (micro_dualnet_jax/data/synthetic.py) of four classes, kept to the
ten keypoints of a small upper-body pose estimator (JOINTS, in its order), in pixels with the
joint confidence last. Your own arrays go in the same way: `np.save` each clip (T, V, C) or
(T, V, C + 1), and write one `file,label,split` line per clip.
"""

import argparse
import csv
import os
import tempfile

import numpy as np


from micro_dualnet_jax.data import synthetic  # pylint: disable=wrong-import-position
from micro_dualnet_jax.skeleton import get_layout  # pylint: disable=wrong-import-position

# The keypoints of the demo's pose estimator, in its order (a subset of openpose22's names).
JOINTS = ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder',
          'left_elbow', 'left_wrist', 'right_eye', 'left_eye')
CLASSES = ('touch_forehead', 'cross_arms', 'nod', 'shrug')


def write_folder(out: str, train_clips: int, test_clips: int) -> dict[str, int]:
  """Writes out/clips/<split>_<i>.npy and out/labels.csv; returns {split: clips written}."""
  source = get_layout('openpose22').joint_names
  keep = [source.index(name) for name in JOINTS]
  wanted = [synthetic.class_names().index(name) for name in CLASSES]
  os.makedirs(os.path.join(out, 'clips'), exist_ok=True)
  rows, counts = [], {}
  for split, count in (('train', train_clips), ('test', test_clips)):
    # The generator cycles through its 15 classes; keep the clips of the four wanted ones.
    clips = synthetic.generate_split(split, num_clips=count * 4, seed=0)
    clips = [c for c in clips if c.label in wanted][:count]
    for i, clip in enumerate(clips):
      array = np.concatenate([clip.keypoints[:, keep], clip.confidence[:, keep, None]], axis=-1)
      file = f'clips/{split}_{i:04d}.npy'
      np.save(os.path.join(out, file), array.astype(np.float32))
      rows.append((file, synthetic.class_names()[clip.label], split))
    counts[split] = len(clips)
  with open(os.path.join(out, 'labels.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(('file', 'label', 'split'))
    writer.writerows(rows)
  return counts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--out', default='', help='the folder to write (default: a new temporary '
                      'one)')
  parser.add_argument('--train_clips', type=int, default=48)
  parser.add_argument('--test_clips', type=int, default=24)
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix='mdn_clip_folder_')
  counts = write_folder(out, args.train_clips, args.test_clips)
  print(f'{out}: {counts}, {len(JOINTS)} joints, classes {list(CLASSES)}')


if __name__ == '__main__':
  main()

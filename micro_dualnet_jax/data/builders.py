"""TFDS builders: one per dataset, all writing `array_record` files (no TensorFlow needed).

Every builder shares one feature spec (`clip_features`) and one example
encoder (`clip_example`); a dataset only says which layout it has, which splits its manual folder
holds and how to read a split (the readers in `micro_dualnet_jax.data.readers`). Records read back
through `tfds.data_source` / `builder.as_data_source` are dicts of numpy arrays:

  keypoints   float32 (T, V, C)
  confidence  float32 (T, V)
  label       int64   ()        -1 for unlabelled clips (the MA-52 test split)
  clip_id     bytes   ()
  num_frames  int32   ()        T
  body_label  int64   ()        MA-52 only (docs/data_formats.md, MA-52), -1 when unlabelled
  list_line   int64   ()        MA-52 only: the clip's line in its list file (submission order)

Examples are keyed by clip id, so TFDS stores them in a deterministic, hash-shuffled order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from micro_dualnet_jax.data.clip import Clip
from micro_dualnet_jax.data.readers import folder, imigue, ma52, nwucla
from micro_dualnet_jax.errors import ConfigError
from micro_dualnet_jax.skeleton import get_layout

VERSION = tfds.core.Version('1.0.0')
RELEASE_NOTES = {'1.0.0': 'First release.'}


def clip_features(layout: str, extra: Sequence[str] = ()) -> tfds.features.FeaturesDict:
  """The feature spec shared by every builder, for clips of `layout` (V joints, C coordinates).

  Args:
    layout: joint layout name.
    extra: names of additional int64 scalar features (e.g. 'body_label').
  """
  lay = get_layout(layout)
  v, c = lay.num_joints, lay.coord_dims
  features = {
      'keypoints': tfds.features.Tensor(shape=(None, v, c), dtype=np.float32),
      'confidence': tfds.features.Tensor(shape=(None, v), dtype=np.float32),
      'label': tfds.features.Scalar(dtype=np.int64),
      'clip_id': tfds.features.Text(),
      'num_frames': tfds.features.Scalar(dtype=np.int32),
  }
  features.update({name: tfds.features.Scalar(dtype=np.int64) for name in extra})
  return tfds.features.FeaturesDict(features)


def clip_example(clip: Clip, extra: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
  """(key, example) for one clip; `extra` features are read from `clip.meta`."""
  example = {
      'keypoints': clip.keypoints.astype(np.float32),
      'confidence': clip.confidence.astype(np.float32),
      'label': clip.label,
      'clip_id': clip.clip_id,
      'num_frames': clip.num_frames,
  }
  example.update({name: int(clip.meta[name]) for name in extra})
  return clip.clip_id, example


class ClipDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the dataset builders: shared features, metadata and example generation.

  Subclasses set LAYOUT, CLASS_NAMES, DESCRIPTION, HOMEPAGE, CITATION, (EXTRA_FEATURES) and
  implement `_available_splits(root)` and `_read_split(root, split)`.
  """
  VERSION = VERSION
  RELEASE_NOTES = RELEASE_NOTES
  LAYOUT: str = ''
  CLASS_NAMES: tuple[str, ...] = ()
  EXTRA_FEATURES: tuple[str, ...] = ()
  DESCRIPTION = ''
  HOMEPAGE = ''
  CITATION = ''

  def __init__(self, **kwargs: Any):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  @property
  def layout(self) -> str:
    return self.LAYOUT

  def _class_names(self) -> list[str]:
    return list(self.CLASS_NAMES)

  def _info(self) -> tfds.core.DatasetInfo:
    names = self._class_names()
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, homepage=self.HOMEPAGE or None,
        citation=self.CITATION, features=clip_features(self.layout, self.EXTRA_FEATURES),
        metadata=tfds.core.MetadataDict(
            layout=self.layout, class_names=names, num_classes=len(names)))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    # Only datasets with manual files have a manual_dir (TFDS refuses the access otherwise).
    root = dl_manager.manual_dir if self.MANUAL_DOWNLOAD_INSTRUCTIONS else None
    return {split: self._generate_examples(self._lazy_read(root, split))
            for split in self._available_splits(root)}

  def _lazy_read(self, root: os.PathLike[str] | None, split: str) -> Iterator[Clip]:
    # A generator, so a split is read only when TFDS writes it.
    yield from self._read_split(root, split)

  def _generate_examples(self, clips: Iterable[Clip]) -> Iterator[tuple[str, dict[str, Any]]]:
    for clip in clips:
      yield clip_example(clip, self.EXTRA_FEATURES)

  def _available_splits(self, root: os.PathLike[str] | None) -> list[str]:
    """The splits whose files `root` (the manual folder) holds."""
    raise NotImplementedError

  def _read_split(self, root: os.PathLike[str] | None, split: str) -> list[Clip]:
    """The clips of one split, each with a unique clip_id."""
    raise NotImplementedError


class Imigue(ClipDatasetBuilder):
  """iMiGUE micro-gestures (docs/data_formats.md, iMiGUE), `openpose22`, 32 classes.

  Configs: `raw` reads the per-video CSV release (whole clips), `processed` the ST-GCN arrays
  (at most 90 frames per clip). `micro_dualnet_jax.data.prepare` picks the one the folder holds.
  """
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='raw', description='Per-video CSV release, cut into clips.'),
      tfds.core.BuilderConfig(name='processed', description='ST-GCN arrays (N, 3, 90, 22, 1).'),
  ]
  LAYOUT = imigue.LAYOUT
  CLASS_NAMES = imigue.IMIGUE_CLASSES
  DESCRIPTION = 'iMiGUE: identity-free micro-gesture clips of tennis press interviews.'
  HOMEPAGE = 'https://github.com/linuxsino/iMiGUE'
  CITATION = """@inproceedings{liu2021imigue,
  title     = {{iMiGUE}: An Identity-free Video Dataset for Micro-Gesture Understanding and
               Emotion Analysis},
  author    = {Liu, Xin and Shi, Henglin and Chen, Haoyu and Yu, Zitong and Li, Xiaobai and
               Zhao, Guoying},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  pages     = {10631--10642},
  year      = {2021}
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
iMiGUE is released under a signed agreement. Request it through
https://github.com/linuxsino/iMiGUE (or the MiGA micro-gesture challenge organisers), then put
ONE of these directly in the manual folder (default <data_dir>/downloads/manual/imigue/):
  raw release:       imigue_skeleton_train/, imigue_skeleton_validate/, imigue_skeleton_test/
                     (each holding <video>/<video>_light_hand.csv and <video>_label.csv)
  processed arrays:  train_data.npy + train_label.pkl, valid_data.npy + valid_label.pkl
                     and/or test_data.npy + test_label.pkl
"""

  def _available_splits(self, root: os.PathLike[str]) -> list[str]:
    if self.builder_config.name == 'raw':
      return imigue.raw_splits(root)
    return imigue.processed_splits(root)

  def _read_split(self, root: os.PathLike[str], split: str) -> list[Clip]:
    if self.builder_config.name == 'raw':
      return imigue.read_raw_split(root, split)
    return imigue.read_processed_split(root, split)


class Ma52(ClipDatasetBuilder):
  """MA-52 micro-actions (docs/data_formats.md, MA-52), `openpose28`, 52 actions in 7 body groups.

  The test split is unlabelled (label and body_label -1): its labels are withheld.
  """
  LAYOUT = ma52.LAYOUT
  CLASS_NAMES = ma52.MA52_CLASSES
  EXTRA_FEATURES = ('body_label', 'list_line')
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {**RELEASE_NOTES,
                   '1.1.0': "clip_id is the video name as listed ('test0000.mp4'), the name the "
                            "benchmark's prediction.csv must carry; list_line, the clip's line "
                            "in the list file, orders the submission's rows."}
  DESCRIPTION = 'MA-52: 52 micro-actions of seated interviewees, official OpenPose skeletons.'
  HOMEPAGE = 'https://github.com/VUT-HFUT/Micro-Action'
  CITATION = """@article{guo2024benchmarking,
  title   = {Benchmarking Micro-action Recognition: Dataset, Methods, and Applications},
  author  = {Guo, Dan and Li, Kun and Hu, Bin and Zhang, Yan and Wang, Meng},
  journal = {IEEE Transactions on Circuits and Systems for Video Technology},
  volume  = {34},
  number  = {7},
  pages   = {6238--6252},
  year    = {2024}
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MA-52 is released under a signed agreement: request it at
https://github.com/VUT-HFUT/Micro-Action (follow the dataset request instructions there). Put
these files directly in the manual folder (default <data_dir>/downloads/manual/ma52/):
  train_list_videos.txt, val_list_videos.txt, test_list_videos.txt   (annotation lists)
  MA52_train.pkl, MA52_val.pkl, MA52_test.pkl                        (OpenPose skeletons)
  label_name.txt                                                     (optional, class names)
"""

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    # A label_name.txt in the release overrides the released names (`MA52_CLASSES`).
    self.info.metadata['class_names'] = ma52.class_names(dl_manager.manual_dir)
    return super()._split_generators(dl_manager)

  def _available_splits(self, root: os.PathLike[str]) -> list[str]:
    return ma52.available_splits(root)

  def _read_split(self, root: os.PathLike[str], split: str) -> list[Clip]:
    return ma52.read_ma52_split(root, split)


class Nwucla(ClipDatasetBuilder):
  """NW-UCLA (docs/data_formats.md, NW-UCLA), `kinect20` 3D, 10 classes, cross-view splits."""
  LAYOUT = nwucla.LAYOUT
  CLASS_NAMES = nwucla.NWUCLA_CLASSES
  DESCRIPTION = 'Northwestern-UCLA Multiview Action3D skeletons, cross-view protocol.'
  HOMEPAGE = 'http://wangjiangb.github.io/my_data.html'
  CITATION = """@inproceedings{wang2014cross,
  title     = {Cross-view Action Modeling, Learning and Recognition},
  author    = {Wang, Jiang and Nie, Xiaohan and Xia, Yin and Wu, Ying and Zhu, Song-Chun},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  pages     = {2649--2656},
  year      = {2014}
}"""
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {**RELEASE_NOTES,
                   '1.1.0': 'view1 and view2 splits (the training views one at a time).'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
NW-UCLA is for research and non-commercial use. Get the skeleton release `all_sqe` (1,484
aAA_sSS_eEE_vVV.json files; the one the published skeleton methods use, linked from e.g. the
CTR-GCN repository https://github.com/Uason-Chen/CTR-GCN; original dataset page
http://wangjiangb.github.io/my_data.html) and put the all_sqe/ folder in the manual folder
(default <data_dir>/downloads/manual/nwucla/, giving .../nwucla/all_sqe/*.json).
"""

  def _available_splits(self, root: os.PathLike[str]) -> list[str]:
    return list(nwucla.SPLIT_VIEWS)

  def _read_split(self, root: os.PathLike[str], split: str) -> list[Clip]:
    return nwucla.read_nwucla(root, split)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """Synthetic dataset sizes; the config name encodes every value so datasets never collide."""
  name: str = ''  # derived from the values below
  num_train: int = 256
  num_test: int = 64
  seed: int = 0
  layout: str = 'openpose22'

  def __post_init__(self):
    if self.num_train < 1 or self.num_test < 1:
      raise ConfigError(f'num_train and num_test must be >= 1, got {self.num_train}, '
                       f'{self.num_test}')
    get_layout(self.layout)  # unknown layouts fail here, listing the known ones
    self.name = synthetic_config_name(self.num_train, self.num_test, self.seed, self.layout)


def synthetic_config_name(num_train: int, num_test: int, seed: int, layout: str) -> str:
  """Config name of a synthetic dataset, e.g. 'openpose22_train256_test64_seed0'."""
  return f'{layout}_train{num_train}_test{num_test}_seed{seed}'


class SkeletonSynthetic(ClipDatasetBuilder):
  """Synthetic clips from `micro_dualnet_jax.data.synthetic.generate_split` (no download).

  Build any size with `SkeletonSynthetic(config=SyntheticConfig(num_train=..., ...))`.
  """
  name = 'skeleton_synthetic'
  BUILDER_CONFIGS = [SyntheticConfig()]
  DESCRIPTION = 'Synthetic skeleton clips with known class structure, for tests and smoke runs.'
  CITATION = """@misc{microdualnet2026,
  title  = {Micro-DualNet: Dual-Path Spatio-Temporal Network for Micro-Action Recognition},
  note   = {IEEE International Conference on Automatic Face and Gesture Recognition (FG)},
  eprint = {2604.21011},
  archivePrefix = {arXiv},
  year   = {2026}
}"""

  @property
  def layout(self) -> str:
    return self.builder_config.layout

  def _class_names(self) -> list[str]:
    from micro_dualnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.class_names()

  def _available_splits(self, root: os.PathLike[str] | None) -> list[str]:
    return ['train', 'test']

  def _read_split(self, root: os.PathLike[str] | None, split: str) -> list[Clip]:
    from micro_dualnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    cfg = self.builder_config
    num_clips = cfg.num_train if split == 'train' else cfg.num_test
    return synthetic.generate_split(split, num_clips=num_clips, seed=cfg.seed, layout=cfg.layout)


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """A folder dataset: where it is, its classes and layout. The name (the prepared dataset's
  folder under data_dir) is derived from all three and from labels.csv's bytes, so two folders,
  or a folder whose labels.csv changed, never reuse each other's prepared data."""
  name: str = ''  # derived
  folder: str = ''
  classes: tuple[str, ...] = ()
  layout: str = ''

  def __post_init__(self):
    self.folder = os.path.abspath(self.folder)
    self.classes = tuple(folder.check_classes(self.classes))
    get_layout(self.layout)  # unknown layouts fail here, listing the known ones
    labels = folder.labels_path(self.folder)
    fingerprint = hashlib.sha256(json.dumps(
        [self.folder, self.classes, self.layout]).encode() + labels.read_bytes()).hexdigest()
    self.name = f'{self.layout}_{len(self.classes)}_classes_{fingerprint[:12]}'


class ClipFolder(ClipDatasetBuilder):
  """Your own clips: one .npy per clip and labels.csv (docs/own_dataset.md), in any registered
  layout, with the classes the config lists. Build with `ClipFolder(config=FolderConfig(...))`."""
  name = 'clip_folder'
  DESCRIPTION = 'A folder of clips (one .npy each) with labels.csv (file, label, split).'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Point data.manual_dir at a folder holding labels.csv (header file,label,split; one line per
clip) and the .npy file of every clip it lists, each (T, V, C) or (T, V, C + 1) with the
confidence last, in the layout data.options.layout; data.options.classes lists the class names
(docs/own_dataset.md).
"""

  @property
  def layout(self) -> str:
    return self.builder_config.layout

  def _class_names(self) -> list[str]:
    return list(self.builder_config.classes)

  def _available_splits(self, root: os.PathLike[str]) -> list[str]:
    return folder.splits_of(folder.read_labels(root, self.builder_config.classes))

  def _read_split(self, root: os.PathLike[str], split: str) -> list[Clip]:
    cfg = self.builder_config
    return folder.read_folder_split(root, split, cfg.classes, cfg.layout)

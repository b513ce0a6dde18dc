"""What the code knows about each dataset, in one place: one `DatasetSpec` per name (no JAX, no TFDS).

A spec names the dataset's joint layout and classes, how it is scored (`metrics.SCORERS`), which
challenge file its predictions make (`submission.WRITERS`), which `data.options` it takes, where
its released files are looked for and how a folder of them is recognised (reader dispatch), and
the TFDS builder that writes its array_record files (`builders.py`, imported only when a dataset
is prepared or opened). No module outside this one compares a dataset name.

Adding a dataset is one reader (`data/readers/`), one builder (`builders.py`) and one spec here:

    register(DatasetSpec(name='mydata', layout='kinect25', class_names=(...), builder='MyData',
                         find_release=lambda root, options: (readers.mydata.holds(root), None)))

docs/data_formats.md walks through it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from micro_dualnet_jax.data import ma52_classes, synthetic
from micro_dualnet_jax.data.readers import folder, imigue, ma52, nwucla
from micro_dualnet_jax.errors import ConfigError
from micro_dualnet_jax.skeleton import get_layout

# Where NW-UCLA is kept beside the project (one of its default manual folders).
_SHARED_NWUCLA = pathlib.Path(__file__).resolve().parents[2] / '..' / 'shared' / 'datasets' / (
    'nw_ucla')

# find_release(root, options) -> (whether root holds the release, the builder config reading it)
ReleaseFinder = Callable[[pathlib.Path, Mapping[str, Any]], tuple[bool, str | None]]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One dataset.

  Attributes:
    name: the `data.name` of a run config.
    layout: the joint layout of its clips (`skeleton.get_layout`).
    class_names: class names in label order.
    builder: the name of its TFDS builder class in `builders.py`.
    scorer: how an eval split is scored, a key of `metrics.SCORERS`.
    best_metrics: metrics its scorer adds to the common ones, allowed as `best_metric`.
    submission: the challenge file its predictions make, a key of `submission.WRITERS` (None:
      predictions.csv only).
    options: the `data.options` it accepts, with their check (None: any value).
    find_release: recognises a folder of its released files (None for a generated dataset).
    generated_config: a generated dataset's builder config from its options.
    config_option: the option that chooses among several builder configs (iMiGUE's 'source').
    manual_dirs: folders searched after the default ones when no manual_dir is given.
    title: the name in messages.
    unknown_options: the message refusing unknown options ({unknown}, {name}, {known}).
    required_options: options a config of the dataset must give.
    class_names_option: the option that lists the classes (your own folder dataset), instead
      of `class_names`.
    release_config: the builder config reading the release found in a folder, from the folder,
      the options and whether to read and check every clip first (prepare does; opening a
      prepared split does not); a dataset with one needs its manual_dir to open a split.
    get_data: one sentence saying where to read how to get the released files and what the
      folder must hold (the end of the one-line error when none are found).
  """
  name: str
  layout: str
  class_names: tuple[str, ...]
  builder: str
  scorer: str = 'classification'
  best_metrics: tuple[str, ...] = ()
  submission: str | None = None
  options: Mapping[str, Callable[[Any], None] | None] = dataclasses.field(default_factory=dict)
  find_release: ReleaseFinder | None = None
  generated_config: Callable[[Mapping[str, Any]], Any] | None = None
  config_option: str | None = None
  manual_dirs: tuple[pathlib.Path, ...] = ()
  title: str = ''
  unknown_options: str = 'unknown options {unknown} for dataset {name!r}; known: {known}'
  required_options: tuple[str, ...] = ()
  class_names_option: str | None = None
  release_config: Callable[[pathlib.Path, Mapping[str, Any], bool], Any] | None = None
  get_data: str = ('docs/data_formats.md, "Getting the datasets", says where to get it and which '
                   'files the folder must hold.')

  def __post_init__(self):
    if not self.title:
      object.__setattr__(self, 'title', self.name)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def check_options(self, options: Mapping[str, Any]) -> None:
    """Refuses an option the dataset does not take, or a bad value of one, by name."""
    unknown = sorted(set(options) - set(self.options))
    if unknown:
      raise ConfigError(self.unknown_options.format(unknown=unknown, name=self.name,
                                                   known=tuple(self.options)))
    missing = [key for key in self.required_options if options.get(key) in (None, '', ())]
    if missing:
      raise ConfigError(f'dataset {self.name!r} needs data.options.'
                        + ' and data.options.'.join(missing))
    for key, check in self.options.items():
      if check is not None and options.get(key) is not None:
        check(options[key])

  def classes(self, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The class names in label order (`options` where the dataset lists them there)."""
    if self.class_names_option:
      return tuple(options.get(self.class_names_option) or ())
    return self.class_names

  def builder_class(self) -> type:
    """The TFDS builder class (imports tensorflow_datasets)."""
    from micro_dualnet_jax.data import builders  # pylint: disable=g-import-not-at-top
    return getattr(builders, self.builder)


_SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  if spec.name in _SPECS:
    raise ConfigError(f'dataset {spec.name!r} is registered already')
  _SPECS[spec.name] = spec
  return spec


def get_spec(name: str) -> DatasetSpec:
  if name not in _SPECS:
    raise ConfigError(f'unknown dataset {name!r}; known datasets: {sorted(_SPECS)}')
  return _SPECS[name]


def dataset_names() -> tuple[str, ...]:
  return tuple(_SPECS)


# ----------------------------------------------------------------------------- the datasets


def imigue_release(root: pathlib.Path, source: str | None = None) -> str | None:
  """Which iMiGUE release `root` holds: 'raw', 'processed', or None for neither.

  Args:
    source: 'raw' or 'processed' to look for that release alone (needed when both are present).
  """
  found = {'raw': imigue.raw_splits(root), 'processed': imigue.processed_splits(root)}
  if source is not None:
    return source if found[source] else None
  if found['raw'] and found['processed']:
    raise ConfigError(
        f'{root} holds both the raw iMiGUE release ({found["raw"]}) and processed arrays '
        f'({found["processed"]}); choose one with --config.data.options.source=raw or '
        'source=processed')
  return next((release for release, splits in found.items() if splits), None)


def _check_imigue_source(source: Any) -> None:
  if source not in (None, 'raw', 'processed'):
    raise ConfigError(f'iMiGUE source must be "raw" or "processed", got {source!r}')


def _imigue_release(root: pathlib.Path, options: Mapping[str, Any]) -> tuple[bool, str | None]:
  release = imigue_release(root, options.get('source'))
  return release is not None, release


register(DatasetSpec(
    name='imigue', title='iMiGUE', layout=imigue.LAYOUT,
    class_names=tuple(imigue.IMIGUE_CLASSES), builder='Imigue', submission='imigue',
    options={'source': _check_imigue_source}, config_option='source',
    find_release=_imigue_release,
    get_data='iMiGUE is released under a signed agreement: docs/data_formats.md, "Getting the '
             'datasets", says where to request it and which files the folder must hold.'))
register(DatasetSpec(
    name='ma52', layout=ma52.LAYOUT, class_names=tuple(ma52_classes.MA52_CLASSES),
    builder='Ma52', scorer='ma52', best_metrics=('f1_mean', 'body_top1'), submission='ma52',
    find_release=lambda root, options: (bool(ma52.available_splits(root)), None),
    get_data='MA-52 is released under a signed agreement: docs/data_formats.md, "Getting the '
             'datasets", says where to request it and which files the folder must hold.'))
register(DatasetSpec(
    name='nwucla', layout=nwucla.LAYOUT, class_names=tuple(nwucla.NWUCLA_CLASSES),
    builder='Nwucla',
    find_release=lambda root, options: (any(nwucla.sequence_dir(root).glob('*.json')), None),
    manual_dirs=(_SHARED_NWUCLA.resolve(),)))
_SYNTHETIC_OPTIONS = ('num_train', 'num_test', 'seed', 'layout')


def _synthetic_config(options: Mapping[str, Any]) -> Any:
  from micro_dualnet_jax.data import builders  # pylint: disable=g-import-not-at-top
  return builders.SyntheticConfig(**options)


register(DatasetSpec(
    name='synthetic', layout='openpose22', class_names=tuple(synthetic.class_names()),
    builder='SkeletonSynthetic', options=dict.fromkeys(_SYNTHETIC_OPTIONS),
    generated_config=_synthetic_config,
    unknown_options='unknown synthetic options {unknown}; known: {known}'))


def _folder_config(root: pathlib.Path, options: Mapping[str, Any], check_clips: bool) -> Any:
  from micro_dualnet_jax.data import builders  # pylint: disable=g-import-not-at-top
  config = builders.FolderConfig(folder=str(root), classes=tuple(options['classes']),
                                 layout=options['layout'])
  if check_clips:
    folder.check_folder(root, config.classes, config.layout)
  return config


register(DatasetSpec(
    name='folder', title='your own folder', layout='', class_names=(), builder='ClipFolder',
    options={'classes': folder.check_classes, 'layout': get_layout},
    required_options=('classes', 'layout'), class_names_option='classes',
    find_release=lambda root, options: (folder.labels_path(root).is_file(), None),
    release_config=_folder_config,
    get_data='The folder must hold labels.csv and the .npy clips it lists (docs/own_dataset.md).'))

"""The trained-run contract: what a work directory holds, and the one way to read it back.

Training writes a run directory; evaluation, prediction, export and ensembling read it through
`RunDir` only, so none of them imports the training loop. A run directory holds:

  run.json            {"format": "micro_dualnet_jax.run", "format_version": 2, "kind": "run",
                       "seed": s, "package_version": ..., "class_names": [...]}
  config.json         the resolved run config (every section, as trained)
  config_history.jsonl  the configs a resume replaced, one line each: the step it resumed
                      from, what changed, the whole earlier config (only after such a resume)
  checkpoints/<step>/ the last checkpoints; best/<step>/ the best one (`checkpoint.py`)
  metrics.jsonl       one JSON line per log and evaluation point
  summary.json        final and best metrics, step, wall time, parameter checksum (when done)
  eval_outputs.npz    logits, routing weights, labels, clip ids of the eval split
  eval_metrics.json, predictions.csv, the challenge submission (+ .zip), PNG plots

A run of several seeds (`--config.num_seeds=N`) is a directory of kind "seeds": run.json lists the
seeds, config.json is the config as given, summary.json holds each seed's summary and the mean
and standard deviation of every metric over the seeds, and `seed_<s>/` is the complete run
directory of seed s, which every mode accepts as if it had been trained alone.

`format_version` changes when a directory written by an older version can no longer be read;
such a directory (or one without run.json, written before the format was recorded) is refused
by name. `class_names` (the dataset's, in label order) lets eval, predict and export name the
classes without opening the dataset; runs written before it was recorded get their dataset's
registered names (`data/registry.py`).

One process at a time writes a run directory: training (process 0 of a multi-process run) and an
evaluation writing its outputs there hold its lock (`lock`, `dirlock.py`; `.lock` in the top
directory of a run of several seeds covers its seed folders).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.errors import RunDirError

from micro_dualnet_jax import atomic
from micro_dualnet_jax.dirlock import DirectoryLock

FORMAT = 'micro_dualnet_jax.run'
FORMAT_VERSION = 2
RUN_FILE = 'run.json'
CONFIG_FILE = 'config.json'
CONFIG_HISTORY_FILE = 'config_history.jsonl'
SUMMARY_FILE = 'summary.json'
METRICS_FILE = 'metrics.jsonl'
EVAL_OUTPUTS_FILE = 'eval_outputs.npz'
EVAL_METRICS_FILE = 'eval_metrics.json'
PREDICTIONS_FILE = 'predictions.csv'
CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'best'
SEED_PREFIX = 'seed_'
# What defines what a checkpoint computes: a run directory holding another value of any of these
# is a different model (None: the whole section). The augmentation strengths may change on resume;
# the input the model sees may not.
MODEL_KEYS: dict[str, tuple[str, ...] | None] = {
    'model': None, 'loss': None,
    'augment': ('stream', 'normalize', 'align_yaw', 'pad_instead_of_resample', 'num_frames'),
    'data': ('max_frames',),
}




def seed_dir_name(seed: int) -> str:
  return f'{SEED_PREFIX}{seed}'


def jsonable(value: Any) -> Any:
  """`value` as it reads back from JSON (tuples -> lists, unknown types -> str)."""
  return json.loads(json.dumps(value, default=str))


def config_dict(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
  """A run config as config.json holds it."""
  return jsonable(config.to_dict() if isinstance(config, RunConfig) else config)


def config_differences(old: dict[str, Any], new: RunConfig | dict[str, Any],
                       keys: dict[str, Sequence[str] | None] | None = None) -> list[str]:
  """'section.key: old in the work directory, new now' for every value that differs, over
  `keys` (section -> keys, None for all; default MODEL_KEYS), in that order (`_changed`)."""
  changed = _changed(old, new)
  diffs = []
  for section, names in (MODEL_KEYS if keys is None else keys).items():
    for key in (sorted(k for k in changed if k.startswith(f'{section}.')) if names is None
                else (f'{section}.{name}' for name in names)):
      if key in changed:
        before, now = changed[key]
        diffs.append(f'{key}: {before!r} in the work directory, {now!r} now')
  return diffs


def config_changes(old: dict[str, Any], new: RunConfig | dict[str, Any]) -> list[str]:
  """'key: old -> new' for every value of the whole config that differs (`_changed`)."""
  return [f'{key}: {before!r} -> {now!r}' for key, (before, now) in _changed(old, new).items()]


def _changed(old: dict[str, Any], new: RunConfig | dict[str, Any]
             ) -> dict[str, tuple[Any, Any]]:
  """key -> (old value, new value) for every value that differs, sorted by key: top-level
  values by name, section values as 'section.key'. Both are read as today's config first where
  they can be, so a field added since `old` was written counts at its default."""
  old, new = _flat(_as_today(old)), _flat(_as_today(config_dict(new)))
  return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
          if old.get(key) != new.get(key)}


def _flat(values: dict[str, Any]) -> dict[str, Any]:
  flat = {}
  for key, value in values.items():
    if isinstance(value, dict):
      flat.update({f'{key}.{name}': v for name, v in value.items()})
    else:
      flat[key] = value
  return flat


def _as_today(values: dict[str, Any]) -> dict[str, Any]:
  try:
    return config_dict(RunConfig.from_dict(values))
  except ValueError:   # not a whole run config (or of a format no longer read): as it is
    return values


def _write_json(path: str, value: Any) -> None:
  """Written whole, then renamed: another process may be reading the old file."""
  atomic.write_json(path, value)


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise RunDirError(f'{path} is missing; the work directory is damaged') from None
  except json.JSONDecodeError as error:
    raise RunDirError(f'{path} is not valid JSON ({error}); the work directory is damaged') \
        from None


@dataclasses.dataclass(frozen=True)
class RunDir:
  """A work directory, read and written by the rules of the module docstring."""
  path: str

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  # ------------------------------------------------------------------- what is there

  def exists(self) -> bool:
    """Whether training has written this directory (its run.json or, older, config.json)."""
    return os.path.isfile(self.file(RUN_FILE)) or os.path.isfile(self.file(CONFIG_FILE))

  def run_info(self) -> dict[str, Any]:
    """run.json, checked: a missing directory, an older or unknown format raise RunDirError."""
    if not self.exists():
      what = 'does not exist' if not os.path.exists(self.path) else 'holds no trained run'
      raise RunDirError(f'work directory {self.path!r} {what} (no {RUN_FILE}); train first '
                        'with --mode=train')
    if not os.path.isfile(self.file(RUN_FILE)):
      raise RunDirError(
          f'work directory {self.path!r} was written by an older micro_dualnet_jax (before '
          f'work-directory format {FORMAT_VERSION}: no {RUN_FILE}, checkpoints without the '
          "model's dropout RNG state); this version cannot resume or read it: train again "
          'into a new --workdir')
    info = _read_json(self.file(RUN_FILE))
    version = info.get('format_version') if isinstance(info, dict) else None
    if not isinstance(info, dict) or info.get('format') != FORMAT or version != FORMAT_VERSION:
      raise RunDirError(
          f'{self.file(RUN_FILE)}: work-directory format {version!r} of '
          f'{info.get("package_version") if isinstance(info, dict) else "?"}; this version '
          f'reads format {FORMAT_VERSION}: use the micro_dualnet_jax that wrote it, or train '
          'again into a new --workdir')
    return info

  @property
  def kind(self) -> str:
    return self.run_info()['kind']

  def seeds(self) -> list[int]:
    info = self.run_info()
    return list(info['seeds']) if info['kind'] == 'seeds' else [int(info['seed'])]

  def seed_runs(self) -> list[RunDir]:
    """The run directory of each seed: seed_<s>/ for a run of several seeds, else itself."""
    if self.kind != 'seeds':
      return [self]
    return [RunDir(self.file(seed_dir_name(s))) for s in self.seeds()]

  def require_single_run(self, mode: str) -> None:
    """Refuses a directory of several seeds where one trained model is needed."""
    if self.kind == 'seeds':
      names = ', '.join(os.path.join(self.path, seed_dir_name(s)) for s in self.seeds())
      raise RunDirError(f'{self.path!r} holds a run of {len(self.seeds())} seeds; --mode={mode} '
                        f'takes one of them: {names}')

  # ------------------------------------------------------------------- config

  def config(self) -> RunConfig:
    """The run's config.json, checked."""
    self.run_info()
    value = _read_json(self.file(CONFIG_FILE))
    if not isinstance(value, dict):
      raise RunDirError(f'{self.file(CONFIG_FILE)} does not hold a config')
    try:
      return RunConfig.from_dict(value)
    except ValueError as error:
      raise RunDirError(f'{self.file(CONFIG_FILE)}: {error}') from None

  def class_names(self) -> list[str]:
    """The class names the run was trained with (run.json), else its dataset's registered
    ones (a run written before run.json recorded them)."""
    names = self.run_info().get('class_names')
    return list(names) if names else self.config().data.class_names

  def raw_config(self) -> dict[str, Any] | None:
    """config.json as written (any format), None when there is none."""
    path = self.file(CONFIG_FILE)
    return _read_json(path) if os.path.isfile(path) else None

  def check_same_model(self, config: RunConfig | dict[str, Any]) -> None:
    """Refuses `config` if the directory holds a run with other model, loss or input settings
    (MODEL_KEYS; a setting that keeps every parameter shape, e.g. velocity_scale or the input
    stream, would otherwise restore and silently compute something else), or checkpoints
    without the config.json that says what they are."""
    old = self.raw_config()
    if old is None:
      if self.has_checkpoints():
        raise RunDirError(
            f'{self.file(CONFIG_FILE)} is missing, but {self.path!r} holds checkpoints: without '
            'it they cannot be checked against this config (another model would be restored '
            'or trained over). Put config.json back, or use a new --workdir')
      return
    diffs = config_differences(old, config)
    if diffs:
      raise RunDirError(f'work directory {self.path!r} holds a run with a different model: '
                        + '; '.join(diffs) + '. Use a new --workdir or the old config.')

  def write(self, config: RunConfig, *, kind: str, seeds: Sequence[int],
            package_version: str, class_names: Sequence[str], trained_steps: int = 0,
            **facts: Any) -> list[str]:
    """Creates the directory (if needed) and writes run.json (with `facts`, e.g. the data
    pipeline the run trained with) and config.json.

    A resumed run (`trained_steps`: the step it resumes from) whose config differs from
    config.json (a raised step budget, another learning rate) first appends the config it
    replaces to config_history.jsonl, so the steps trained before stay described. Returns the
    changes ('key: old -> new'), [] when there are none."""
    os.makedirs(self.path, exist_ok=True)
    new = config_dict(config)
    old = self.raw_config()
    changes = (config_changes(old, new) if trained_steps and isinstance(old, dict) and old != new
               else [])
    if changes:
      record = {'trained_steps': trained_steps, 'changes': changes, 'config': old}
      with open(self.file(CONFIG_HISTORY_FILE), 'a') as f:
        f.write(json.dumps(record) + '\n')
        f.flush()
        os.fsync(f.fileno())
    info: dict[str, Any] = {'format': FORMAT, 'format_version': FORMAT_VERSION, 'kind': kind,
                            'package_version': package_version,
                            'class_names': list(class_names), **facts}
    if kind == 'seeds':
      info['seeds'] = list(seeds)
    else:
      (info['seed'],) = seeds
    _write_json(self.file(CONFIG_FILE), new)
    _write_json(self.file(RUN_FILE), info)
    return changes

  def config_history(self) -> list[dict[str, Any]]:
    """config_history.jsonl's records, oldest first ([] when no resume changed the config)."""
    path = self.file(CONFIG_HISTORY_FILE)
    if not os.path.isfile(path):
      return []
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]

  # ------------------------------------------------------------------- results

  def summary(self) -> dict[str, Any] | None:
    path = self.file(SUMMARY_FILE)
    return _read_json(path) if os.path.isfile(path) else None

  def write_summary(self, summary: dict[str, Any]) -> None:
    _write_json(self.file(SUMMARY_FILE), summary)

  def checkpoint_steps(self, folder: str = CHECKPOINTS_DIR) -> list[int]:
    """The committed checkpoint steps under checkpoints/ (or `folder`, e.g. best/), read from
    the folder names."""
    folder = self.file(folder)
    if not os.path.isdir(folder):
      return []
    return sorted(int(p) for p in os.listdir(folder) if p.isdigit())

  def has_checkpoints(self) -> bool:
    """Whether checkpoints/ or best/ holds a committed checkpoint."""
    return bool(self.checkpoint_steps() or self.checkpoint_steps(BEST_DIR))

  # ------------------------------------------------------------------- one writer at a time

  def lock_dir(self) -> str:
    """The folder whose lock covers this one: the run of several seeds this is a seed folder
    of, else this directory."""
    parent, name = os.path.split(os.path.normpath(os.path.abspath(self.path)))
    if name.startswith(SEED_PREFIX) and os.path.isfile(os.path.join(parent, RUN_FILE)):
      try:
        info = _read_json(os.path.join(parent, RUN_FILE))
      except RunDirError:
        return self.path
      if isinstance(info, dict) and info.get('kind') == 'seeds' and \
          name in {seed_dir_name(s) for s in info.get('seeds', [])}:
        return parent
    return self.path

  def lock(self, activity: str) -> DirectoryLock:
    """The (not yet acquired) lock of this run directory (`lock_dir`), for `activity`
    ('training', 'evaluating')."""
    return DirectoryLock(self.lock_dir(), what='work directory', activity=activity)

"""NW-UCLA study: settings x streams, each a run of several seeds in one process, one JSON each.

Every run is `python main.py --config=configs/nwucla.py --config.num_seeds=N` plus the overrides
of a named setting (SETTINGS) and a stream, so what is measured is exactly a user's command. Its
JSON, `benchmarks/results/nwucla/<split>/<setting>__<stream>.json`, holds the resolved config,
the git commit, Python / JAX versions, the CPU, the seeds, the wall time, and per seed Top-1,
Top-5 and per-class accuracy, with their mean and standard deviation. Beside it,
`<key>.scores.npz` keeps every seed's final eval logits, scored with the run's test-time views
and with one view (one clip, no mirror: how published figures are scored), so ensembles and
other statistics can be computed later without the work directories. A run whose JSON and
scores exist is read back, not trained again; a run whose work directory holds checkpoints
resumes from them (main.py does), so a sweep stopped part way goes on where it stopped; the
aggregate file (`--summary_out`) is rebuilt from the run JSONs every time.

Splits: `selection` trains on view 1 and scores view 2 (model selection; view 3 is never read);
`test` trains on views 1-2 and scores view 3 (the protocol's test view, for the chosen recipe
only). The figure of a run is its final step's, never the best over evaluations.

  python benchmarks/nwucla.py --split=selection --settings=base,position --streams=joint
  python benchmarks/nwucla.py --split=test --settings=chosen \\
      --streams=joint,bone,joint_motion,bone_motion --summary_out=benchmarks/results/nwucla.json

With several streams, the score-level ensemble of each seed (weighted mean of softmax
probabilities, weights fixed in advance: DEFAULT_WEIGHTS) is reported per seed and as mean +- std,
for both ways of scoring.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # pylint: disable=wrong-import-position

from micro_dualnet_jax import ensemble, metrics  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
from micro_dualnet_jax.data.readers.nwucla import NWUCLA_CLASSES  # pylint: disable=wrong-import-position
from micro_dualnet_jax.rundir import RunDir  # pylint: disable=wrong-import-position

STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')
SPLITS = {'selection': ('view1', 'view2'), 'test': ('train', 'test')}
POSITION = "('center','root','position','velocity','confidence')"
# Named settings: config overrides on top of configs/nwucla.py (the round-2 recipe).
SETTINGS: dict[str, dict[str, str]] = {
    'base': {},
    'epochs120': {'num_epochs': '120'},
    'epochs200': {'num_epochs': '200'},
    'position': {'model.joint_features': POSITION},
    'position_epochs120': {'model.joint_features': POSITION, 'num_epochs': '120'},
    'dropjoint': {'augment.drop_joints_prob': '0.5', 'augment.drop_axis_prob': '0.5'},
    'jitter': {'augment.temporal_jitter': 'True'},
    'dropout02': {'model.dropout': '0.2'},
    'width128': {'model.width': '128'},
    'epochs400': {'num_epochs': '400'},
    # SkateFormer's lead: T distinct frames drawn at random and kept in order, each embedded at
    # its real place in the clip instead of its slot.
    'random_frames': {'augment.temporal_sampling': 'random', 'model.time_embedding': 'position'},
    # A remedy for the near-binary, seed-dependent router: an entropy bonus on its weights. On the
    # host pipeline, as the base runs it is compared with (same data order per seed).
    'router_entropy01': {'loss.router_entropy_weight': '0.1', 'data.pipeline': 'host'},
    # 0.1 evened every entity's weights to 0.5 / 0.5 (a learned mean fusion): a weaker bonus
    # (docs/results.md, 'The router').
    'router_entropy001': {'loss.router_entropy_weight': '0.01', 'data.pipeline': 'host'},
    # The training split on the devices (data order drawn on the device): same learning as the
    # host loader's base runs within the seed spread?
    'device_pipeline': {'data.pipeline': 'device'},
    # The paper's claims (joint stream): paths, fusion, MAC form. Their seeds 0-2 (and base's)
    # ran on the host loader, before the device path existed; the host pin keeps new seeds of
    # them on the same data order, so that seeds of one variant come from one data path.
    **{name: {**overrides, 'data.pipeline': 'host'}
       for name, overrides in common.CLAIM_VARIANTS.items()},
}
# Stream weights of the ensemble, fixed in advance (CTR-GCN weights its NW-UCLA streams so).
DEFAULT_WEIGHTS = {'joint': 0.6, 'bone': 0.6, 'joint_motion': 0.4, 'bone_motion': 0.4}

_SPLIT = flags.DEFINE_enum('split', 'selection', list(SPLITS), 'selection: view 1 -> view 2; '
                           'test: views 1-2 -> view 3.')
_SETTINGS = flags.DEFINE_list('settings', ['base'], 'Named settings (SETTINGS), optionally '
                              'NAME+NAME to combine their overrides.')
_STREAMS = flags.DEFINE_list('streams', ['joint'], f'Input streams, from {STREAMS}.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds per run (one process, vmapped).')
_SEED = flags.DEFINE_integer('seed', 0, 'First seed.')
_SET = flags.DEFINE_multi_string('set', [], 'Extra override KEY=VALUE for every run.')
_RUNS = flags.DEFINE_string('workdir_root', '/tmp/nwucla_runs', 'Where the work directories go.')
_RESULTS = flags.DEFINE_string('results', os.path.join(_ROOT, 'benchmarks', 'results', 'nwucla'),
                               'Where the run JSONs go (one folder per split).')
_SUMMARY = flags.DEFINE_string('summary_out', None, 'Also write the aggregate JSON here.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'NW-UCLA folder (default: the config\'s).')
_DRY = flags.DEFINE_bool('dry_run', False, 'Print the commands, train nothing.')


def setting_overrides(name: str) -> dict[str, str]:
  out: dict[str, str] = {}
  for part in name.split('+'):
    if part not in SETTINGS:
      raise app.UsageError(f'unknown setting {part!r}; known: {sorted(SETTINGS)}')
    out.update(SETTINGS[part])
  return out


def run_overrides(setting: str, stream: str) -> dict[str, str]:
  train_split, eval_split = SPLITS[_SPLIT.value]
  out = {'data.train_split': train_split, 'data.eval_split': eval_split,
         'augment.stream': stream, 'num_seeds': str(_NUM_SEEDS.value), 'seed': str(_SEED.value),
         **setting_overrides(setting)}
  if _MANUAL_DIR.value:
    out['data.manual_dir'] = _MANUAL_DIR.value
  for item in _SET.value:
    key, sep, value = item.partition('=')
    if not sep:
      raise app.UsageError(f'--set expects KEY=VALUE, got {item!r}')
    out[key] = value
  return out


def _slug(text: str) -> str:
  """A file-name-safe form of an override: '=' -> '-', '.', '/' and anything else odd -> '_'."""
  return re.sub(r'[^A-Za-z0-9_+-]', '_', text.replace('=', '-')).strip('_')


def run_key(setting: str, stream: str, first_seed: int | None = None,
            num_seeds: int | None = None, extra_overrides: list[str] | None = None) -> str:
  """The run's name: one path component, whatever the --set values hold (a data_dir, say)."""
  first = _SEED.value if first_seed is None else first_seed
  count = _NUM_SEEDS.value if num_seeds is None else num_seeds
  items = _SET.value if extra_overrides is None else extra_overrides
  extra = ''.join(f'__{_slug(item)}' for item in items)
  return f'{setting}__{stream}__seeds{first}-{first + count - 1}{extra}'


def _cpu() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip() + f' ({os.cpu_count()} cores)'
  except OSError:
    pass
  return platform.processor() or 'unknown'


ONE_VIEW = 'views_c1'   # the seed folder's sub-folder of one-view eval outputs


def seed_scores(folder: str) -> dict[str, Any]:
  """Top-1, Top-5, mean class accuracy and per-class accuracy of one seed's final scores."""
  return scores_record(ensemble.load_run(folder))


def scores_record(scores: ensemble.RunScores) -> dict[str, Any]:
  """Top-1, Top-5, mean class accuracy, per-class accuracy and the largest confusions."""
  result = metrics.classification_metrics(scores.logits, scores.labels)
  return {'top1': round(result['top1'], 2), 'top5': round(result['top5'], 2),
          'mean_class_accuracy': round(result['mean_class_accuracy'], 2),
          'per_class_accuracy': ensemble.per_class_accuracy(result['confusion_matrix'],
                                                            NWUCLA_CLASSES),
          'errors': confusions(result['confusion_matrix'])}


def confusions(cm: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
  """The largest off-diagonal cells: which class is taken for which, and how often."""
  cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j]
  return [{'true': NWUCLA_CLASSES[i], 'predicted': NWUCLA_CLASSES[j], 'clips': n,
           'of': int(cm[i].sum())} for n, i, j in sorted(cells, reverse=True)[:top] if n]


def mean_std(values: list[float]) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {'mean': round(float(values.mean()), 2),
          'std': round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)}


VIEWS = ('views', 'one_view')   # the run's test-time views; one clip, no mirror


def _scores_path(out_path: str) -> str:
  return out_path[:-len('.json')] + '.scores.npz'


def one_view_outputs(seed_workdir: str) -> str:
  """Evaluates the seed's final checkpoint with one view (once); returns the outputs' folder."""
  folder = os.path.join(seed_workdir, ONE_VIEW)
  if not os.path.exists(os.path.join(folder, ensemble.OUTPUTS_FILE)):
    subprocess.run([sys.executable, os.path.join(_ROOT, 'main.py'), '--mode=eval',
                    f'--workdir={seed_workdir}', '--checkpoint=latest', f'--output={folder}',
                    '--config.test_time.num_clips=1', '--config.test_time.flip=False'],
                   cwd=_ROOT, check=True, capture_output=True)
  return folder


def save_scores(path: str, per_seed: dict[str, dict[str, ensemble.RunScores]]) -> None:
  """Every seed's final logits for both ways of scoring, with the clips' ids and labels."""
  first = next(iter(next(iter(per_seed.values())).values()))
  arrays = {'clip_ids': first.clip_ids, 'labels': first.labels,
            'eval_split': np.asarray(first.eval_split)}
  for seed, views in per_seed.items():
    for view, scores in views.items():
      if not (np.array_equal(scores.clip_ids, first.clip_ids)
              and np.array_equal(scores.labels, first.labels)):
        raise RuntimeError(f'{scores.workdir}: other clips or labels than {first.workdir}')
      arrays[f'logits__seed{seed}__{view}'] = scores.logits.astype(np.float32)
  temporary = path + '.tmp.npz'
  np.savez_compressed(temporary, **arrays)
  os.replace(temporary, path)


def load_scores(path: str, weight: float = 1.0) -> dict[str, dict[str, ensemble.RunScores]]:
  """{seed: {view: RunScores}} from a file of save_scores."""
  with np.load(path, allow_pickle=False) as data:
    arrays = {name: data[name] for name in data.files}
  out: dict[str, dict[str, ensemble.RunScores]] = {}
  for name, logits in arrays.items():
    if name.startswith('logits__'):
      _, seed, view = name.split('__')
      out.setdefault(seed.removeprefix('seed'), {})[view] = ensemble.RunScores(
          f'{path}:{name}', weight, logits.astype(np.float64), arrays['labels'],
          arrays['clip_ids'].astype(str), str(arrays['eval_split']))
  return out


def run_one(setting: str, stream: str) -> dict[str, Any] | None:
  """Trains, resumes or reads back one run of num_seeds seeds; returns its record."""
  key = run_key(setting, stream)
  out_path = os.path.join(_RESULTS.value, _SPLIT.value, f'{key}.json')
  scores_path = _scores_path(out_path)
  if os.path.exists(out_path) and os.path.exists(scores_path):
    with open(out_path) as f:
      print(f'{key}: finished earlier ({out_path})', flush=True)
      return json.load(f)
  workdir = os.path.join(_RUNS.value, _SPLIT.value, key)
  overrides = run_overrides(setting, stream)
  command = [sys.executable, os.path.join(_ROOT, 'main.py'),
             f'--config={os.path.join(_ROOT, "configs", "nwucla.py")}', f'--workdir={workdir}',
             *[f'--config.{k}={v}' for k, v in overrides.items()]]
  print(f'{key}: {" ".join(command[1:])}', flush=True)
  if _DRY.value:
    return None
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  start = time.time()
  with open(f'{workdir}.log', 'a') as log:   # beside the work directory, which main.py owns
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT)
  run = RunDir(workdir)
  if code != 0 or not run.exists() or run.summary() is None:
    raise RuntimeError(f'{key} failed (exit {code}); see {workdir}.log')
  seeds, scores = {}, {}
  for seed, seed_run in zip(run.seeds(), run.seed_runs()):
    scores[str(seed)] = {'views': ensemble.load_run(seed_run.path),
                         'one_view': ensemble.load_run(one_view_outputs(seed_run.path))}
    seeds[str(seed)] = {**scores_record(scores[str(seed)]['views']),
                        'one_view_top1': scores_record(scores[str(seed)]['one_view'])['top1'],
                        'workdir': seed_run.path}
  summary = run.summary()
  record = {
      'split': _SPLIT.value, 'setting': setting, 'stream': stream,
      'overrides': overrides, 'command': ' '.join(command[1:]),
      'git_commit': common.git_commit(), 'python': platform.python_version(),
      'jax': metadata.version('jax'), 'flax': metadata.version('flax'), 'cpu': _cpu(),
      'device': summary.get('device', 'unknown (a run of an older commit)'), 'seeds': seeds,
      'top1': mean_std([s['top1'] for s in seeds.values()]),
      'top5': mean_std([s['top5'] for s in seeds.values()]),
      'one_view_top1': mean_std([s['one_view_top1'] for s in seeds.values()]),
      # Training wall time over every session of the run (a resumed run counts them all), and
      # this invocation's wall time (training left, evaluations).
      'wall_s': summary.get('wall_time_s'), 'invocation_wall_s': round(time.time() - start, 1),
      'train_steps': summary.get('step'),
      'eval_split': SPLITS[_SPLIT.value][1],
      'num_eval_clips': len(next(iter(scores.values()))['views'].labels),
      'scores_file': os.path.basename(scores_path),
      'config': run.raw_config(),
  }
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  save_scores(scores_path, scores)   # before the JSON: a JSON is only there with its scores
  common.write_json(record, out_path, echo=False)
  return record


def ensemble_record(setting: str, records: list[dict[str, Any]]) -> dict[str, Any]:
  """Per seed, the weighted ensemble of the streams' scores (both ways of scoring); mean +- std."""
  members = [load_scores(os.path.join(_RESULTS.value, _SPLIT.value, r['scores_file']),
                         DEFAULT_WEIGHTS[r['stream']]) for r in records]
  per_seed: dict[str, dict[str, Any]] = {}
  for seed in records[0]['seeds']:
    for view in VIEWS:
      probs, labels, _ = ensemble.combine([member[seed][view] for member in members])
      result = metrics.classification_metrics(probs, labels)
      if view == 'views':
        per_seed[seed] = {'top1': round(result['top1'], 2),
                          'per_class_accuracy': ensemble.per_class_accuracy(
                              result['confusion_matrix'], NWUCLA_CLASSES),
                          'errors': confusions(result['confusion_matrix'])}
      else:
        per_seed[seed]['one_view_top1'] = round(result['top1'], 2)
  return {'setting': setting, 'streams': [r['stream'] for r in records],
          'weights': {r['stream']: DEFAULT_WEIGHTS[r['stream']] for r in records},
          'seeds': per_seed, 'top1': mean_std([s['top1'] for s in per_seed.values()]),
          'one_view_top1': mean_std([s['one_view_top1'] for s in per_seed.values()])}


def flat_figures(streams: dict[str, dict[str, float]],
                 ensemble_top1: dict[str, float] | None) -> dict[str, float]:
  """`<stream>_top1_mean`, `<stream>_top1_std` (and `ensemble_...`) from mean +- std records."""
  out = {}
  for name, top1 in {**streams, **({'ensemble': ensemble_top1} if ensemble_top1 else {})}.items():
    out[f'{name}_top1_mean'], out[f'{name}_top1_std'] = top1['mean'], top1['std']
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for stream in _STREAMS.value:
    if stream not in STREAMS:
      raise app.UsageError(f'unknown stream {stream!r}; choose from {STREAMS}')
  for setting in _SETTINGS.value:
    setting_overrides(setting)
  out: dict[str, Any] = {'benchmark': 'nwucla', 'split': _SPLIT.value,
                         'train_split': SPLITS[_SPLIT.value][0],
                         'eval_split': SPLITS[_SPLIT.value][1], 'runs': {}, 'ensembles': {}}
  for setting in _SETTINGS.value:
    records = []
    for stream in _STREAMS.value:
      record = run_one(setting, stream)
      if record is None:
        continue
      records.append(record)
      out.setdefault('test_time', record['config'].get('test_time'))
      out['runs'][f'{setting}/{stream}'] = {k: record.get(k) for k in (
          'top1', 'top5', 'one_view_top1', 'wall_s', 'git_commit', 'cpu', 'device', 'overrides')}
      out['runs'][f'{setting}/{stream}']['per_seed_top1'] = {
          s: v['top1'] for s, v in record['seeds'].items()}
      print(json.dumps({'run': f'{setting}/{stream}', **record['top1']}), flush=True)
    if len(records) > 1:
      out['ensembles'][setting] = ensemble_record(setting, records)
      print(json.dumps({'ensemble': setting, **out['ensembles'][setting]['top1']}), flush=True)
  if len(_SETTINGS.value) == 1:   # one recipe: its figures as flat keys too
    setting = _SETTINGS.value[0]
    out.update(flat_figures(
        {run.split('/')[1]: r['top1'] for run, r in out['runs'].items()},
        out['ensembles'].get(setting, {}).get('top1')))
    out.update({f'one_view_{k}': v for k, v in flat_figures(
        {run.split('/')[1]: r['one_view_top1'] for run, r in out['runs'].items()
         if r.get('one_view_top1')},
        out['ensembles'].get(setting, {}).get('one_view_top1')).items()})
  common.write_json(out, _SUMMARY.value)


if __name__ == '__main__':
  app.run(main)

"""NW-UCLA benchmark (issue 8): trains and evaluates runs, ensembles streams, writes one JSON.

Each run is `python main.py --config=configs/nwucla.py` in its own process, with the stream
(`augment.stream`) and model variant set by config overrides, so what is measured is exactly the
user's command. Per run the JSON holds Top-1, Top-5, per-class accuracy, wall time, the command
and the resolved config; with two or more streams it also holds their score-level ensemble
(`micro_dualnet_jax/ensemble.py`: weighted mean of softmax probabilities).

  # model selection across the training views (train view 1 -> evaluate view 2), view 3 unread:
  python benchmarks/nwucla.py --heldout --streams=joint --set=num_epochs=80 --tag=e80 \
      --out=/tmp/nwucla_heldout_e80.json
  # the reported numbers: four streams and their ensemble on the 464 view-3 test clips
  python benchmarks/nwucla.py --streams=joint,bone,joint_motion,bone_motion \
      --out=benchmarks/results/nwucla.json
  # ablation of the method's parts (joint stream)
  python benchmarks/nwucla.py --variants=st,ts,dual_mean,dual_routing,dual_routing_mac \
      --out=benchmarks/results/nwucla_ablation.json

A finished run (its work directory holds summary.json) is read back instead of retrained, so an
interrupted benchmark continues where it stopped. The reported test figure of a run is its final
step's, never the best over evaluations, so the test split chooses nothing. Runs are scored with
the test-time views of configs/nwucla.py (`test_time`, or --set=test_time.num_clips=N
--set=test_time.flip=True); a finished run scored otherwise is evaluated again from its final
checkpoint into a subfolder, without retraining.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # pylint: disable=wrong-import-position

from configs import nwucla as nwucla_config  # pylint: disable=wrong-import-position
from micro_dualnet_jax import ensemble, metrics  # pylint: disable=wrong-import-position
from micro_dualnet_jax.data.readers.nwucla import NWUCLA_CLASSES  # pylint: disable=wrong-import-position

STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')
# Model variants of the ablation: config overrides on top of configs/nwucla.py.
VARIANTS = {
    'st': {'model.paths': 'st', 'loss.mac': 'none'},
    'ts': {'model.paths': 'ts', 'loss.mac': 'none'},
    'dual_mean': {'model.fusion': 'mean', 'loss.mac': 'none'},
    'dual_routing': {'model.fusion': 'routing', 'loss.mac': 'none'},
    'dual_routing_mac': {'model.fusion': 'routing', 'loss.mac': 'infonce'},
}
# Held-out (train split, eval split) pairs for model selection; none of them holds view 3.
HELDOUT_SPLITS = {'view': ('view1', 'view2'), 'random': ('train[:90%]', 'train[90%:]')}
# Stream weights of the ensemble, fixed in advance (as CTR-GCN weights its NW-UCLA streams).
DEFAULT_WEIGHTS = {'joint': 1.0, 'bone': 1.0, 'joint_motion': 0.5, 'bone_motion': 0.5}

_STREAMS = flags.DEFINE_list('streams', ['joint'], f'Input streams, from {STREAMS}.')
_VARIANTS = flags.DEFINE_list('variants', ['dual_routing_mac'],
                              f'Model variants, from {sorted(VARIANTS)}.')
_HELDOUT = flags.DEFINE_bool('heldout', False, 'Model selection: train and evaluate on the '
                             'training views only (see --heldout_mode); the test view is not read.')
_HELDOUT_MODE = flags.DEFINE_enum(
    'heldout_mode', 'view', list(HELDOUT_SPLITS), 'view: train on view 1, evaluate on view 2 (a '
    'cross-view shift like the test protocol\'s); random: train[:90%] -> train[90%:].')
_TAG = flags.DEFINE_string('tag', '', 'Appended to the run names, so that runs with different '
                           '--set overrides get their own work directories.')
_SET = flags.DEFINE_multi_string('set', [], 'Extra config override KEY=VALUE for every run, '
                                 'e.g. --set=model.width=96 (repeatable).')
_SEED = flags.DEFINE_integer('seed', 0, 'config.seed of every run.')
_ROOT_DIR = flags.DEFINE_string('workdir_root', '/tmp/nwucla_runs', 'Where run work directories '
                                'go (one per variant and stream).')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'NW-UCLA folder (default: the config\'s, '
                                  '../shared/datasets/nw_ucla).')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here (rewritten after every run).')


def _overrides(variant: str, stream: str) -> dict[str, str]:
  out = {'augment.stream': stream, 'seed': str(_SEED.value), **VARIANTS[variant]}
  if _HELDOUT.value:
    train_split, eval_split = HELDOUT_SPLITS[_HELDOUT_MODE.value]
    out.update({'data.train_split': train_split, 'data.eval_split': eval_split})
  if _MANUAL_DIR.value:
    out['data.manual_dir'] = _MANUAL_DIR.value
  for item in _SET.value:
    key, sep, value = item.partition('=')
    if not sep:
      raise app.UsageError(f'--set expects KEY=VALUE, got {item!r}')
    out[key] = value
  return out


def run_name(what: str) -> str:
  """Work directory name: held-out mode, `what` (variant_stream_seed or ensemble_variant), tag."""
  prefix = f'heldout_{_HELDOUT_MODE.value}_' if _HELDOUT.value else ''
  suffix = f'_{_TAG.value}' if _TAG.value else ''
  return f'{prefix}{what}{suffix}'


def run_one(variant: str, stream: str) -> dict[str, Any]:
  """Trains (or reads back) one run; returns its record."""
  name = run_name(f'{variant}_{stream}_seed{_SEED.value}')
  workdir = os.path.join(_ROOT_DIR.value, name)
  overrides = _overrides(variant, stream)
  command = [sys.executable, os.path.join(_ROOT, 'main.py'),
             f'--config={os.path.join(_ROOT, "configs", "nwucla.py")}', f'--workdir={workdir}',
             *[f'--config.{k}={v}' for k, v in overrides.items()]]
  record_path = os.path.join(workdir, 'benchmark_run.json')
  if os.path.exists(os.path.join(workdir, 'summary.json')) and os.path.exists(record_path):
    with open(record_path) as f:
      wall_s = json.load(f)['wall_s']
    print(f'{name}: finished earlier, reading it back', flush=True)
  else:
    os.makedirs(workdir, exist_ok=True)
    print(f'{name}: {" ".join(command)}', flush=True)
    start = time.time()
    with open(os.path.join(workdir, 'train.log'), 'a') as log:
      code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT)
    wall_s = time.time() - start
    if code != 0 or not os.path.exists(os.path.join(workdir, 'summary.json')):
      raise RuntimeError(f'{name} failed (exit {code}); see {workdir}/train.log')
    with open(record_path, 'w') as f:
      json.dump({'wall_s': wall_s}, f)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  scores_dir, eval_s = _scores_with_test_time(workdir, command, overrides)
  scores = ensemble.load_run(scores_dir)
  result = metrics.classification_metrics(scores.logits, scores.labels)
  return {
      'variant': variant, 'stream': stream, 'workdir': workdir,
      'eval_split': scores.eval_split, 'num_eval_clips': int(len(scores.labels)),
      'top1': round(result['top1'], 2), 'top5': round(result['top5'], 2),
      'mean_class_accuracy': round(result['mean_class_accuracy'], 2),
      'per_class_accuracy': ensemble.per_class_accuracy(result['confusion_matrix'],
                                                        NWUCLA_CLASSES),
      'best_during_training': summary.get('best'), 'steps': summary.get('step'),
      'wall_s': round(wall_s, 1), 'command': ' '.join(command[1:]), 'overrides': overrides,
      'test_time': dict(zip(('num_clips', 'flip'), _evaluated_views(scores_dir))),
      'scores_dir': scores_dir, 'test_time_eval_s': eval_s, 'config': config,
  }


def _wanted_views(overrides: dict[str, str]) -> tuple[int, bool]:
  """(num_clips, flip) the runs are scored with: configs/nwucla.py's test_time, then --set."""
  default = nwucla_config.get_config().test_time
  clips = int(overrides.get('test_time.num_clips', default.num_clips))
  flip = str(overrides.get('test_time.flip', default.flip)).lower() in ('true', '1')
  return clips, flip


def _views_name(clips: int, flip: bool) -> str:
  """Folder-name part for a way of scoring, e.g. test_time_c4_flip."""
  return f'test_time_c{clips}' + ('_flip' if flip else '')


def _evaluated_views(scores_dir: str) -> tuple[int, bool]:
  """(num_clips, flip) of scores_dir/eval_outputs.npz; files from before test_time: (1, False)."""
  with np.load(os.path.join(scores_dir, ensemble.OUTPUTS_FILE)) as outputs:
    if 'test_time_clips' not in outputs:
      return 1, False
    return int(outputs['test_time_clips']), bool(outputs['test_time_flip'])


def _scores_with_test_time(workdir: str, command: list[str], overrides: dict[str, str]
                           ) -> tuple[str, float]:
  """The folder holding the run's final-step scores under the wanted test-time views.

  A run whose own final evaluation used other views (e.g. trained before they were chosen) is
  evaluated again from its latest checkpoint into workdir/test_time_c{N}[_flip]; its training
  outputs stay as they are. Returns (folder, seconds spent evaluating)."""
  clips, flip = _wanted_views(overrides)
  if _evaluated_views(workdir) == (clips, flip):
    return workdir, 0.0
  scores_dir = os.path.join(workdir, _views_name(clips, flip))
  if os.path.exists(os.path.join(scores_dir, ensemble.OUTPUTS_FILE)):
    return scores_dir, 0.0
  start = time.time()
  with open(os.path.join(workdir, 'eval.log'), 'a') as log:
    code = subprocess.call([*command, '--mode=eval', '--checkpoint=latest',
                            f'--output={scores_dir}', f'--config.test_time.num_clips={clips}',
                            f'--config.test_time.flip={flip}'],
                           stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT)
  if code != 0:
    raise RuntimeError(f'evaluating {workdir} with test-time views failed (exit {code}); see '
                       f'{workdir}/eval.log')
  return scores_dir, round(time.time() - start, 1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for stream in _STREAMS.value:
    if stream not in STREAMS:
      raise app.UsageError(f'unknown stream {stream!r}; choose from {STREAMS}')
  for variant in _VARIANTS.value:
    if variant not in VARIANTS:
      raise app.UsageError(f'unknown variant {variant!r}; choose from {sorted(VARIANTS)}')
  out: dict[str, Any] = {
      'benchmark': 'nwucla', 'protocol': 'cross-view: train views 1-2, test view 3',
      'evaluated_on': (f'{HELDOUT_SPLITS[_HELDOUT_MODE.value][1]} (held-out, model selection)'
                       if _HELDOUT.value else 'test (view 3, 464 clips)'),
      'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'runs': [],
  }

  def write():
    text = json.dumps(out, indent=1)
    if _OUT.value:
      os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
      with open(_OUT.value, 'w') as f:
        f.write(text)
    return text

  for variant in _VARIANTS.value:
    for stream in _STREAMS.value:
      record = run_one(variant, stream)
      out['runs'].append(record)
      print(json.dumps({k: record[k] for k in ('variant', 'stream', 'top1', 'top5', 'wall_s')}),
            flush=True)
      write()
    if len(_STREAMS.value) > 1:
      runs = [r for r in out['runs'] if r['variant'] == variant]
      members = [(r['scores_dir'], DEFAULT_WEIGHTS[r['stream']]) for r in runs]
      clips, flip = _wanted_views(_overrides(variant, runs[0]['stream']))
      summary = ensemble.run_ensemble(   # one folder per way of scoring
          members, os.path.join(_ROOT_DIR.value,
                                run_name(f'ensemble_{variant}_{_views_name(clips, flip)}')),
          dataset='nwucla',
          class_names=NWUCLA_CLASSES)
      out.setdefault('ensembles', []).append({
          'variant': variant, 'streams': [r['stream'] for r in runs],
          'weights': [w for _, w in members], **summary})
  out['total_wall_s'] = round(sum(r['wall_s'] for r in out['runs']), 1)
  print(write())


if __name__ == '__main__':
  app.run(main)

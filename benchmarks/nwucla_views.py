"""Scores finished NW-UCLA runs again with other test-time views, without retraining.

    python benchmarks/nwucla_views.py --split=test --setting=base --num_clips=1 --noflip \\
        --results=benchmarks/results/nwucla --add_to=benchmarks/results/nwucla.json

For every stream's run JSON of `benchmarks/nwucla.py` (`<results>/<split>/<setting>__<stream>
__seeds*.json`), each seed's final checkpoint is evaluated with `main.py --mode=eval
--checkpoint=latest` and the given views into `<seed workdir>/views_c<N>[_flip]/` (the run's own
outputs stay as they were); the JSON holds per stream and for the fixed-weight ensemble the Top-1
of every seed and the mean +- std.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import nwucla  # pylint: disable=g-bad-import-order,wrong-import-position
from micro_dualnet_jax import ensemble, metrics  # pylint: disable=wrong-import-position

# --split, --results (the run JSON folder) and --summary_out (this JSON) are nwucla.py's flags.
_SETTING = flags.DEFINE_string('setting', 'base', 'The setting whose runs are scored.')
_CLIPS = flags.DEFINE_integer('num_clips', 1, 'test_time.num_clips.')
_FLIP = flags.DEFINE_bool('flip', False, 'test_time.flip.')
_ADD_TO = flags.DEFINE_string('add_to', None, 'Also store these figures in this summary JSON of '
                              'nwucla.py, under the key test_time_<views>.')
_SPLIT, _RESULTS, _OUT = nwucla._SPLIT, nwucla._RESULTS, nwucla._SUMMARY  # pylint: disable=protected-access


def main(argv):
  del argv
  name = f'views_c{_CLIPS.value}' + ('_flip' if _FLIP.value else '')
  records = {}
  for path in sorted(glob.glob(os.path.join(_RESULTS.value, _SPLIT.value,
                                            f'{_SETTING.value}__*.json'))):
    with open(path) as f:
      record = json.load(f)
    records[record['stream']] = record
  out = {'split': _SPLIT.value, 'setting': _SETTING.value,
         'test_time': {'num_clips': _CLIPS.value, 'flip': _FLIP.value}, 'streams': {}}
  folders = {}
  for stream, record in records.items():
    per_seed = {}
    for seed, entry in record['seeds'].items():
      folder = os.path.join(entry['workdir'], name)
      if not os.path.exists(os.path.join(folder, 'eval_outputs.npz')):
        subprocess.run([sys.executable, os.path.join(_ROOT, 'main.py'), '--mode=eval',
                        f'--workdir={entry["workdir"]}', '--checkpoint=latest',
                        f'--output={folder}', f'--config.test_time.num_clips={_CLIPS.value}',
                        f'--config.test_time.flip={_FLIP.value}'], cwd=_ROOT, check=True,
                       capture_output=True)
      folders[stream, seed] = folder
      per_seed[seed] = nwucla.seed_scores(folder)['top1']
    out['streams'][stream] = {'seeds': per_seed, 'top1': nwucla.mean_std(list(per_seed.values()))}
  if len(records) > 1:
    per_seed = {}
    for seed in next(iter(records.values()))['seeds']:
      runs = [ensemble.load_run(folders[stream, seed], nwucla.DEFAULT_WEIGHTS[stream])
              for stream in records]
      probs, labels, _ = ensemble.combine(runs)
      per_seed[seed] = round(metrics.classification_metrics(probs, labels)['top1'], 2)
    out['ensemble'] = {'weights': {s: nwucla.DEFAULT_WEIGHTS[s] for s in records},
                       'seeds': per_seed, 'top1': nwucla.mean_std(list(per_seed.values()))}
  out.update(nwucla.flat_figures({s: r['top1'] for s, r in out['streams'].items()},
                                 out.get('ensemble', {}).get('top1')))
  common.write_json(out, _OUT.value)
  if _ADD_TO.value:
    with open(_ADD_TO.value) as f:
      summary = json.load(f)
    summary[f'test_time_{name}'] = {k: v for k, v in out.items() if k not in ('split', 'setting')}
    common.write_json(summary, _ADD_TO.value, echo=False)


if __name__ == '__main__':
  app.run(main)

"""Compares two settings of `benchmarks/nwucla.py` by the 95 % interval of the difference of means.

    python benchmarks/compare.py --split=selection --a=epochs200 --b=base --paired \\
        --reported_gain=1.0 --out=benchmarks/results/nwucla_length_sweep.json

Reads every finished seed range of both settings (stream `--stream`), and prints and writes the
difference of mean Top-1 (a - b), its 95 % interval (`stats.py`: paired by seed with --paired,
else Welch) and its verdict against --reported_gain (the gain that would matter: 'effect smaller'
means the interval excludes it). Pair only runs that share each seed's data order and initial
weights: two training lengths or two regularisation strengths of one model do; variants with
other modules do not. Trains nothing.
"""

from __future__ import annotations

import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import stats  # pylint: disable=g-bad-import-order,wrong-import-position

_RESULTS = flags.DEFINE_string('results', os.path.join(_ROOT, 'benchmarks', 'results', 'nwucla'),
                               'nwucla.py --results.')
_SPLIT = flags.DEFINE_string('split', 'selection', 'selection or test.')
_A = flags.DEFINE_string('a', None, 'The setting under test; a+b merges the seeds of two '
                         'settings (one recipe whose later seeds ran under another name).',
                         required=True)
_B = flags.DEFINE_string('b', 'base', 'The setting it is compared against (a+b as for --a).')
_STREAM = flags.DEFINE_string('stream', 'joint', 'Input stream.')
_PAIRED = flags.DEFINE_bool('paired', False, 'Pair by seed (shared data order and init only).')
_GAIN = flags.DEFINE_float('reported_gain', 1.0, 'The smallest gain that would matter.')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  runs = {}
  for name in (_A.value, _B.value):
    seeds, commits = common.setting_seeds(_RESULTS.value, _SPLIT.value, name.split('+'),
                                          _STREAM.value)
    if len(seeds) < 2:
      raise app.UsageError(f'{name}/{_STREAM.value} on {_SPLIT.value}: {len(seeds)} finished '
                           'seed(s); a comparison needs at least 2')
    runs[name] = {'seeds': seeds, 'git_commits': commits}
  result = stats.compare(runs[_A.value]['seeds'], runs[_B.value]['seeds'], _GAIN.value,
                         paired=_PAIRED.value)
  common.write_json({'split': _SPLIT.value, 'stream': _STREAM.value, 'a': _A.value,
                     'b': _B.value, 'runs': runs, 'comparison': result}, _OUT.value)


if __name__ == '__main__':
  app.run(main)

"""The paper's three claims, read back from finished runs of both studies: one table, one verdict each.

    python benchmarks/claims.py --out=benchmarks/results/claims.json

Reads the NW-UCLA selection runs of `benchmarks/nwucla.py` (view 1 -> view 2, joint stream;
`<nwucla_results>/selection/<variant>__joint__seeds0-2.json`, the full model being the recipe
`base`) and the synthetic runs of `benchmarks/ablation_synthetic.py`
(`<synthetic_results>/<variant>__seeds3.json`). Trains nothing; a variant without a finished run is
listed as missing.

A difference between two variants counts as real only when the gap between their mean Top-1
exceeds twice the pooled standard deviation of their seeds, sqrt((s_a^2 + s_b^2) / 2).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, 'benchmarks'))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

_NWUCLA = flags.DEFINE_string('nwucla_results', os.path.join(_ROOT, 'benchmarks', 'results',
                                                             'nwucla'), 'nwucla.py --results.')
_SYNTHETIC = flags.DEFINE_string('synthetic_results', os.path.join(
    _ROOT, 'benchmarks', 'results', 'claims_synthetic'), 'ablation_synthetic.py --results.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds per run.')
_OUT = flags.DEFINE_string('out', None, 'Write the JSON here.')

# Each claim: the variant the paper favours, and what it is compared against.
CLAIMS = {
    'dual > single path': ('dual_routing', ('st', 'ts')),
    'routing > fixed fusion': ('dual_routing', ('dual_static', 'dual_mean')),
    'MAC helps': ('dual_routing_mac', ('dual_routing',)),
    'MAC (KL form) helps': ('dual_routing_kl', ('dual_routing',)),
}
NWUCLA_SETTING = {'dual_routing_mac': 'base'}   # the recipe is the full model


def _read(path: str) -> dict[str, Any] | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def nwucla_runs() -> dict[str, dict[str, Any]]:
  """variant -> {'seeds': [Top-1 per seed], 'mean', 'std'} for the finished NW-UCLA runs."""
  out = {}
  last = _NUM_SEEDS.value - 1
  for variant in common.CLAIM_VARIANTS:
    setting = NWUCLA_SETTING.get(variant, variant)
    record = _read(os.path.join(_NWUCLA.value, 'selection', f'{setting}__joint__seeds0-{last}.json'))
    if record:
      out[variant] = {'seeds': [s['top1'] for s in record['seeds'].values()],
                      **record['top1'], 'git_commit': record['git_commit']}
  return out


def synthetic_runs() -> dict[str, dict[str, Any]]:
  out = {}
  for variant in common.CLAIM_VARIANTS:
    record = _read(os.path.join(_SYNTHETIC.value, f'{variant}__seeds{_NUM_SEEDS.value}.json'))
    if record:
      out[variant] = {'seeds': [s['top1'] for s in record['seeds'].values()],
                      'mean': record['top1_mean'], 'std': record['top1_std'],
                      'git_commit': record['git_commit']}
  return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
  """Gap a - b in mean Top-1, twice the pooled std, and whether the gap is real."""
  gap = a['mean'] - b['mean']
  bound = 2 * math.sqrt((a['std'] ** 2 + b['std'] ** 2) / 2)
  return {'gap': round(gap, 2), 'two_pooled_std': round(bound, 2),
          'real': abs(gap) > bound, 'favours': 'first' if gap > 0 else 'second'}


def verdicts(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
  out = {}
  for claim, (favoured, others) in CLAIMS.items():
    if favoured not in runs or any(o not in runs for o in others):
      out[claim] = {'verdict': 'not measured',
                    'missing': [v for v in (favoured, *others) if v not in runs]}
      continue
    comparisons = {o: compare(runs[favoured], runs[o]) for o in others}
    if all(c['real'] and c['gap'] > 0 for c in comparisons.values()):
      verdict = 'holds'
    elif any(c['real'] and c['gap'] < 0 for c in comparisons.values()):
      verdict = 'contradicted'
    elif any(c['real'] and c['gap'] > 0 for c in comparisons.values()):
      verdict = 'holds against some'
    else:
      verdict = 'not resolved (within seed spread)'
    out[claim] = {'verdict': verdict, 'favoured': favoured, 'against': comparisons}
  return out


def markdown(studies: dict[str, dict[str, dict[str, Any]]]) -> str:
  names = list(studies)
  lines = ['| variant | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
  for variant, overrides in common.CLAIM_VARIANTS.items():
    cells = []
    for name in names:
      run = studies[name].get(variant)
      cells.append(f"{run['mean']:.2f} +- {run['std']:.2f}" if run else 'not run')
    label = ', '.join(f'{k}={v}' for k, v in overrides.items())
    lines.append(f'| {variant} ({label}) | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  studies = {'NW-UCLA view 1 -> 2': nwucla_runs(), 'synthetic': synthetic_runs()}
  out = {'rule': 'a gap is real when |mean_a - mean_b| > 2 * sqrt((std_a^2 + std_b^2) / 2)',
         'variants': common.CLAIM_VARIANTS,
         'studies': {name: {'runs': runs, 'claims': verdicts(runs)}
                     for name, runs in studies.items()},
         'table': markdown(studies)}
  print(out['table'])
  for name, study in out['studies'].items():
    for claim, result in study['claims'].items():
      print(f'{name}: {claim}: {result["verdict"]}')
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(out, f, indent=1)
      f.write('\n')


if __name__ == '__main__':
  app.run(main)

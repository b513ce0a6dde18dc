"""The paper's claims, read back from finished runs of both studies: one table, one verdict each.

    python benchmarks/claims.py --out=benchmarks/results/claims.json

Reads the NW-UCLA selection runs of `benchmarks/nwucla.py` (view 1 -> view 2, joint stream;
`<nwucla_results>/selection/<variant>__joint__seeds<a>-<b>.json`, every seed range of a variant
merged; the full model is the recipe, seeds 0-2 from `base` and later seeds from
`dual_routing_mac`, NWUCLA_SETTINGS) and the synthetic runs of
`benchmarks/ablation_synthetic.py` (`<synthetic_results>/<variant>__seeds3.json`). Trains
nothing; a variant without a finished run is listed as missing.

Each comparison is the difference of mean Top-1 with its 95 % confidence interval (Welch,
`stats.py`). The variants are not paired by seed: they share each seed's data order and
augmentation draws, but not their initial weights (other modules draw other weights from the
same seed). Its verdict (stats.verdict) sets the interval against the gain the paper reports on
iMiGUE for that component; routing against fixed fusion has no published number, and +2.0 stands
in for it. How the paper's gains map to our comparisons (REPORTED_GAIN) is our reading of its
ablation: the TS-first path +4.8 (TS only against ST only), the dual paths +3.8 (routing against
each single path), MAC +2.9 (both MAC forms against routing without MAC).
"""

from __future__ import annotations

import json
import os
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import stats  # pylint: disable=g-bad-import-order,wrong-import-position

_NWUCLA = flags.DEFINE_string('nwucla_results', os.path.join(_ROOT, 'benchmarks', 'results',
                                                             'nwucla'), 'nwucla.py --results.')
_SYNTHETIC = flags.DEFINE_string('synthetic_results', os.path.join(
    _ROOT, 'benchmarks', 'results', 'claims_synthetic'), 'ablation_synthetic.py --results.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds per run.')
_OUT = flags.DEFINE_string('out', None, 'Write the JSON here.')

# Each claim: the variant the paper favours, what it is compared against, and the paper's gain.
CLAIMS = {
    'TS-first path > ST-first path': ('ts', ('st',), 4.8),
    'dual paths > single path': ('dual_routing', ('st', 'ts'), 3.8),
    'routing > fixed fusion': ('dual_routing', ('dual_static', 'dual_mean'), 2.0),
    'MAC helps': ('dual_routing_mac', ('dual_routing',), 2.9),
    'MAC (KL form) helps': ('dual_routing_kl', ('dual_routing',), 2.9),
}
# The full model is the recipe: its seeds 0-2 are base's runs, later seeds dual_routing_mac's
# (pinned to the host loader, as base's were).
NWUCLA_SETTINGS = {'dual_routing_mac': ('base', 'dual_routing_mac')}


def _read(path: str) -> dict[str, Any] | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def nwucla_runs() -> dict[str, dict[str, Any]]:
  """variant -> {'seeds': {seed: Top-1}, 'mean', 'std', 'git_commits'}: every finished seed range
  of the variant's selection runs (no extra --set overrides), merged."""
  out = {}
  for variant in common.CLAIM_VARIANTS:
    seeds, commits = common.setting_seeds(_NWUCLA.value, 'selection',
                                          NWUCLA_SETTINGS.get(variant, variant))
    if seeds:
      out[variant] = {'seeds': seeds, **_mean_std(list(seeds.values())), 'git_commits': commits}
  return out


def synthetic_runs() -> dict[str, dict[str, Any]]:
  out = {}
  for variant in common.CLAIM_VARIANTS:
    record = _read(os.path.join(_SYNTHETIC.value, f'{variant}__seeds{_NUM_SEEDS.value}.json'))
    if record:
      seeds = {seed: entry['top1'] for seed, entry in record['seeds'].items()}
      out[variant] = {'seeds': seeds, **_mean_std(list(seeds.values())),
                      'git_commits': [record['git_commit']]}
  return out


def _mean_std(values: list[float]) -> dict[str, float]:
  mean = sum(values) / len(values)
  var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
  return {'mean': round(mean, 2), 'std': round(var ** 0.5, 2)}


def verdicts(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Per claim, per comparison: the difference, its 95 % interval (Welch) and the verdict."""
  out = {}
  for claim, (favoured, others, gain) in CLAIMS.items():
    missing = [v for v in (favoured, *others) if v not in runs or len(runs[v]['seeds']) < 2]
    if missing:
      out[claim] = {'verdict': 'not measured', 'missing': missing}
      continue
    out[claim] = {'favoured': favoured, 'reported_gain': gain, 'against': {
        other: stats.compare(runs[favoured]['seeds'], runs[other]['seeds'], gain, paired=False)
        for other in others}}
  return out


def claim_sentence(claim: str, result: dict[str, Any]) -> str:
  """One line per comparison: 'a vs b: +0.27 [-1.9, 2.4], 3 + 3 seeds: not settled'."""
  if result.get('verdict') == 'not measured':
    return f'{claim}: not measured (missing {", ".join(result["missing"])})'
  parts = []
  for other, c in result['against'].items():
    low, high = c['ci95']
    parts.append(f'{result["favoured"]} vs {other}: {c["difference"]:+.2f} '
                 f'[{low:+.2f}, {high:+.2f}], {c["seeds"][0]} + {c["seeds"][1]} seeds: '
                 f'{c["verdict"]}')
  return f'{claim} (paper: +{result["reported_gain"]}): ' + '; '.join(parts)


def claims_markdown(claims: dict[str, Any]) -> str:
  """The claims of one study as a markdown table: one row per comparison (seeds, difference, its
  95 % interval, the largest effect it still allows, verdict), what docs/results.md shows."""
  lines = ["| claim (paper's gain) | comparison | seeds | difference | 95 % interval | "
           'no effect larger than | verdict |', '|---|---|---|---|---|---|---|']
  for claim, result in claims.items():
    if result.get('verdict') == 'not measured':
      lines.append(f'| {claim} | missing {", ".join(result["missing"])} | | | | | not measured |')
      continue
    for other, c in result['against'].items():
      low, high = c['ci95']
      lines.append(f'| {claim} ({result["reported_gain"]}) | {result["favoured"]} - {other} | '
                   f'{c["seeds"][0]} + {c["seeds"][1]} | {c["difference"]:+.2f} | '
                   f'[{low:+.2f}, {high:+.2f}] | {c["no_effect_larger_than"]:.2f} | '
                   f'{c["verdict"]} |')
  return '\n'.join(lines)


def markdown(studies: dict[str, dict[str, dict[str, Any]]]) -> str:
  names = list(studies)
  lines = ['| variant | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
  for variant, overrides in common.CLAIM_VARIANTS.items():
    cells = []
    for name in names:
      run = studies[name].get(variant)
      cells.append(f"{run['mean']:.2f} +- {run['std']:.2f} ({len(run['seeds'])} seeds)"
                   if run else 'not run')
    label = ', '.join(f'{k}={v}' for k, v in overrides.items())
    lines.append(f'| {variant} ({label}) | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  studies = {'NW-UCLA view 1 -> 2': nwucla_runs(), 'synthetic': synthetic_runs()}
  out = {'rule': ('95 % confidence interval of the difference of mean Top-1 (Welch, unpaired: '
                  'variants share data order, not initial weights); holds: interval above 0; '
                  "effect smaller than the paper's: upper end below the paper's gain; else not "
                  'settled'),
         'reported_gains': {claim: gain for claim, (_, _, gain) in CLAIMS.items()},
         'variants': common.CLAIM_VARIANTS,
         'studies': {name: {'runs': runs, 'claims': verdicts(runs)}
                     for name, runs in studies.items()},
         'table': markdown(studies)}
  for study in out['studies'].values():
    study['claims_table'] = claims_markdown(study['claims'])
  print(out['table'])
  for name, study in out['studies'].items():
    for claim, result in study['claims'].items():
      print(f'{name}: {claim_sentence(claim, result)}')
  common.write_json(out, _OUT.value, echo=False)


if __name__ == '__main__':
  app.run(main)

"""The rule the studies use to compare settings, on hand-made seed results."""

from __future__ import annotations

import json
import math
import pathlib
import sys
import types

import pytest
from scipy import stats as scipy_stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))

import claims  # noqa: E402  pylint: disable=wrong-import-position
import stats  # noqa: E402  pylint: disable=wrong-import-position

T_975_2DOF = 4.302652729749464   # Student t, 97.5 % quantile, 2 degrees of freedom


def test_welch_interval_by_hand():
  # a: mean 2, variance 1; b: constant 0. se = sqrt(1/3), Welch dof = 2 exactly.
  result = stats.welch_interval([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
  half = T_975_2DOF * math.sqrt(1 / 3)
  assert result['difference'] == 2.0
  assert result['ci95'] == [round(2 - half, 2), round(2 + half, 2)] == [-0.48, 4.48]
  assert result['dof'] == 2.0 and not result['paired'] and result['seeds'] == [3, 3]


def test_welch_and_paired_match_scipy():
  a, b = [80.75, 80.16, 79.76, 81.0], [79.56, 81.15, 81.15, 80.2]
  ours = stats.welch_interval(a, b)
  low, high = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval()
  assert ours['ci95'] == [round(low, 2), round(high, 2)]
  ours = stats.paired_interval(dict(enumerate(a)), dict(enumerate(b)))
  low, high = scipy_stats.ttest_rel(a, b).confidence_interval()
  assert ours['ci95'] == [round(low, 2), round(high, 2)]


def test_paired_interval_by_hand_uses_the_shared_seeds_only():
  # d = 2, 2, 2.5: mean 13/6, sd sqrt(1/12), se sqrt(1/36), dof 2. Seed 3 of a has no partner.
  result = stats.paired_interval({0: 3.0, 1: 4.0, 2: 5.0, 3: 99.0}, {0: 1.0, 1: 2.0, 2: 2.5})
  half = T_975_2DOF / 6
  assert result['difference'] == round(13 / 6, 2)
  assert result['ci95'] == [round(13 / 6 - half, 2), round(13 / 6 + half, 2)]
  assert result['paired'] and result['seeds'] == [3, 3]


def test_three_verdicts():
  holds = stats.compare({0: 3.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 2.5}, 2.9, paired=True)
  assert holds['verdict'] == stats.HOLDS                   # [1.45, 2.88] above 0
  assert holds['below_reported'] and not holds['reversed']  # ... and below +2.9
  unpaired = {0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0}   # [-0.48, 4.48]
  assert stats.compare(*unpaired, 4.8, paired=False)['verdict'] == stats.SMALLER
  assert stats.compare(*unpaired, 4.0, paired=False)['verdict'] == stats.NOT_SETTLED
  reversed_ = stats.compare({0: 0.0, 1: 0.1, 2: 0.0}, {0: 3.0, 1: 3.1, 2: 3.2}, 2.0, paired=False)
  assert reversed_['verdict'] == stats.SMALLER and reversed_['reversed']


def test_one_seed_is_refused():
  with pytest.raises(ValueError, match='at least 2 seeds'):
    stats.welch_interval([1.0], [2.0, 3.0])


def test_claims_compare_every_pair_unpaired_with_the_paper_gain():
  seeds = lambda *v: {'seeds': dict(enumerate(v))}
  runs = {'st': seeds(80.0, 80.5, 79.5), 'ts': seeds(80.0, 81.0, 79.0),
          'dual_routing': seeds(85.0, 85.5, 84.5), 'dual_static': seeds(83.0, 86.0, 87.0),
          'dual_mean': seeds(84.0, 85.0, 86.0), 'dual_routing_mac': seeds(85.1, 85.6, 84.6)}
  out = claims.verdicts(runs)
  dual = out['dual paths > single path']
  assert dual['reported_gain'] == 3.8
  assert dual['against']['st']['verdict'] == stats.HOLDS
  assert not dual['against']['st']['paired']
  assert out['routing > fixed fusion']['against']['dual_static']['verdict'] == stats.NOT_SETTLED
  assert out['MAC helps']['against']['dual_routing']['verdict'] == stats.SMALLER
  assert out['MAC (KL form) helps'] == {'verdict': 'not measured', 'missing': ['dual_routing_kl']}
  line = claims.claim_sentence('MAC helps', out['MAC helps'])
  assert line.startswith('MAC helps (paper: +2.9): dual_routing_mac vs dual_routing: +0.10 [')
  rows = claims.claims_markdown(out).splitlines()
  assert len(rows) == 2 + 1 + 2 + 2 + 1 + 1   # header, then one row per comparison
  assert rows[2].startswith('| TS-first path > ST-first path (4.8) | ts - st | 3 + 3 | +0.00 | [')
  assert rows[3].endswith(f"| {stats.HOLDS} |")
  assert rows[-1] == '| MAC (KL form) helps | missing dual_routing_kl | | | | | not measured |'
  interval = dual['against']['st']['ci95']
  assert dual['against']['st']['no_effect_larger_than'] == round(max(map(abs, interval)), 2)


def _write_run(folder: pathlib.Path, name: str, top1: dict[str, float], commit: str) -> None:
  (folder / 'selection').mkdir(parents=True, exist_ok=True)
  record = {'git_commit': commit, 'seeds': {s: {'top1': v} for s, v in top1.items()}}
  (folder / 'selection' / name).write_text(json.dumps(record))


def test_full_model_reads_base_seeds_and_its_host_pinned_later_seeds(tmp_path, monkeypatch):
  monkeypatch.setattr(claims, '_NWUCLA', types.SimpleNamespace(value=str(tmp_path)))
  _write_run(tmp_path, 'base__joint__seeds0-2.json', {'0': 80.0, '1': 81.0, '2': 82.0}, 'aaa')
  _write_run(tmp_path, 'dual_routing_mac__joint__seeds3-4.json', {'3': 79.0, '4': 78.0}, 'bbb')
  _write_run(tmp_path, 'st__joint__seeds0-2.json', {'0': 70.0, '1': 71.0, '2': 72.0}, 'aaa')
  # A run with extra --set overrides is another recipe: not read.
  _write_run(tmp_path, 'st__joint__seeds3-3__num_epochs-1.json', {'3': 10.0}, 'ccc')
  runs = claims.nwucla_runs()
  full = runs['dual_routing_mac']
  assert full['seeds'] == {'0': 80.0, '1': 81.0, '2': 82.0, '3': 79.0, '4': 78.0}
  assert full['mean'] == 80.0 and full['git_commits'] == ['aaa', 'bbb']
  assert runs['st']['seeds'] == {'0': 70.0, '1': 71.0, '2': 72.0}
  assert set(runs) == {'dual_routing_mac', 'st'}
  _write_run(tmp_path, 'dual_routing_mac__joint__seeds2-2.json', {'2': 50.0}, 'bbb')
  with pytest.raises(ValueError, match=r"dual_routing_mac__joint__seeds2-2.json: seed 2 of "
                     r"base\+dual_routing_mac/joint is also in .*base__joint__seeds0-2.json"):
    claims.nwucla_runs()

"""The rule the studies use to call a difference real, on hand-made seed results."""

from __future__ import annotations

import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))

import claims  # noqa: E402  pylint: disable=wrong-import-position


def run(mean, std):
  return {'mean': mean, 'std': std}


def test_gap_against_twice_the_pooled_std():
  result = claims.compare(run(82.0, 0.6), run(80.0, 0.8))
  assert result['gap'] == 2.0
  assert math.isclose(result['two_pooled_std'], round(2 * math.sqrt((0.36 + 0.64) / 2), 2))
  assert result['real']                                   # 2.0 > 1.41
  assert not claims.compare(run(81.0, 0.6), run(80.0, 0.8))['real']   # 1.0 < 1.41


def test_verdicts_hold_contradict_or_stay_unresolved():
  runs = {'dual_routing': run(85.0, 0.5), 'st': run(80.0, 0.5), 'ts': run(84.8, 0.5),
          'dual_static': run(88.0, 0.5), 'dual_mean': run(85.1, 0.5),
          'dual_routing_mac': run(85.2, 0.5)}
  out = claims.verdicts(runs)
  assert out['dual > single path']['verdict'] == 'holds against some'   # beats st, not ts
  assert out['routing > fixed fusion']['verdict'] == 'contradicted'     # static is better
  assert out['MAC helps']['verdict'] == 'not resolved (within seed spread)'
  assert out['MAC (KL form) helps'] == {'verdict': 'not measured', 'missing': ['dual_routing_kl']}
  runs['ts'] = run(82.0, 0.5)
  assert claims.verdicts(runs)['dual > single path']['verdict'] == 'holds'

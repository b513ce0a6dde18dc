"""How the studies compare two settings: the 95 % confidence interval of the difference of means.

Each setting is a list of per-seed scores (Top-1 in percent). The difference is mean(a) - mean(b)
and its interval

  unpaired (Welch):  d +- t(0.975, nu) * sqrt(s_a^2 / n_a + s_b^2 / n_b),
                     nu = (s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))
  paired by seed:    mean(d_s) +- t(0.975, n - 1) * sd(d_s) / sqrt(n),  d_s = a_s - b_s

Pairing is right only when the two runs of seed s share that seed's data order *and*
initialisation (the same model structure trained from the same draws, e.g. two training lengths
of one model); a variant with other modules draws other initial weights from the same seed, so
variants of the model are compared unpaired.

A comparison gets one of three verdicts against the gain a paper reports for it:
  holds                              the interval lies above 0;
  effect smaller than the paper's    its upper end lies below the reported gain;
  not settled                        neither.
(Where both hold, the verdict is 'holds' and `below_reported` says the effect is also smaller.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats as scipy_stats

HOLDS = 'holds'
SMALLER = "effect smaller than the paper's"
NOT_SETTLED = 'not settled'
CONFIDENCE = 0.95


def _mean_var(values: Sequence[float]) -> tuple[float, float, int]:
  n = len(values)
  if n < 2:
    raise ValueError(f'a confidence interval needs at least 2 seeds per setting, got {n}')
  mean = sum(values) / n
  return mean, sum((v - mean) ** 2 for v in values) / (n - 1), n


def welch_interval(a: Sequence[float], b: Sequence[float],
                   confidence: float = CONFIDENCE) -> dict[str, Any]:
  """mean(a) - mean(b) with its Welch confidence interval (unequal variances, unpaired)."""
  mean_a, var_a, n_a = _mean_var(a)
  mean_b, var_b, n_b = _mean_var(b)
  se2_a, se2_b = var_a / n_a, var_b / n_b
  se = math.sqrt(se2_a + se2_b)
  diff = mean_a - mean_b
  if se == 0:   # both settings gave the same score on every seed
    return _interval(diff, diff, diff, math.inf, n_a, n_b, paired=False)
  dof = (se2_a + se2_b) ** 2 / (se2_a ** 2 / (n_a - 1) + se2_b ** 2 / (n_b - 1))
  half = scipy_stats.t.ppf(0.5 + confidence / 2, dof) * se
  return _interval(diff, diff - half, diff + half, dof, n_a, n_b, paired=False)


def paired_interval(a: Mapping[str, float], b: Mapping[str, float],
                    confidence: float = CONFIDENCE) -> dict[str, Any]:
  """Mean of the per-seed differences a_s - b_s over the seeds both have, with its t interval."""
  seeds = sorted(set(a) & set(b), key=str)
  diffs = [a[s] - b[s] for s in seeds]
  mean, var, n = _mean_var(diffs)
  half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt(var / n)
  return _interval(mean, mean - half, mean + half, n - 1, n, n, paired=True)


def _interval(diff, low, high, dof, n_a, n_b, *, paired):
  diff, low, high, dof = float(diff), float(low), float(high), float(dof)
  return {'difference': round(diff, 2), 'ci95': [round(low, 2), round(high, 2)],
          'dof': round(dof, 1) if math.isfinite(dof) else None, 'seeds': [n_a, n_b],
          'paired': paired, '_low': low, '_high': high}


def verdict(interval: Mapping[str, Any], reported_gain: float) -> dict[str, Any]:
  """The interval's verdict against the paper's reported gain (see the module docstring)."""
  low, high = interval['_low'], interval['_high']
  if low > 0:
    name = HOLDS
  elif high < reported_gain:
    name = SMALLER
  else:
    name = NOT_SETTLED
  out = {k: v for k, v in interval.items() if not k.startswith('_')}
  out.update(verdict=name, reported_gain=reported_gain,
             below_reported=high < reported_gain, reversed=high < 0)
  return out


def compare(a: Mapping[str, float], b: Mapping[str, float], reported_gain: float, *,
            paired: bool) -> dict[str, Any]:
  """a, b: {seed: score}. The verdict of a - b, paired by seed or unpaired (Welch), with the
  largest effect the interval still allows ('no_effect_larger_than')."""
  interval = (paired_interval(a, b) if paired
              else welch_interval(list(a.values()), list(b.values())))
  result = verdict(interval, reported_gain)
  result['no_effect_larger_than'] = smallest_excluded(result)
  return result


def smallest_excluded(interval: Mapping[str, Any]) -> float:
  """The largest absolute effect the interval still allows: 'no effect larger than X'."""
  low, high = interval['ci95']
  return round(max(abs(low), abs(high)), 2)

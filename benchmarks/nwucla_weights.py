"""NW-UCLA stream ensemble with weights fitted on view 2, beside the fixed-weight one.

    python benchmarks/nwucla_weights.py --settings=base \
        --streams=joint,bone,joint_motion,bone_motion --out=benchmarks/results/nwucla_weights.json

Reads the scores `benchmarks/nwucla.py` keeps beside its run JSONs (`<key>.scores.npz`; its flags
--results, --settings, --streams, --seed and --num_seeds name the runs) and trains nothing. The
weights are chosen on the selection runs' view-2 scores (trained on view 1: `--split=selection`)
by `ensemble.fit_weights` (the highest view-2 Top-1 over the simplex grid of step 0.1 and the
equal weights, ties to the equal weights), pooling every seed's view-2 clips into one fit, and
then applied unchanged to every seed of the test runs (trained on views 1-2, scored on view 3,
`--split=test`). View 3 is never read to choose them. Each way of scoring (the run's test-time
views, one view) gets its own fit. Beside the fitted weights, the same test runs with the fixed
weights of nwucla.py (DEFAULT_WEIGHTS) and with equal weights.
"""

from __future__ import annotations

import os
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import nwucla  # pylint: disable=g-bad-import-order,wrong-import-position
from micro_dualnet_jax import ensemble, metrics  # pylint: disable=wrong-import-position

_OUT = flags.DEFINE_string('out', None, 'Write the JSON here.')


def scores(split: str, setting: str, stream: str) -> dict[str, dict[str, ensemble.RunScores]]:
  """{seed: {view: RunScores}} of one nwucla.py run of `split`."""
  path = os.path.join(nwucla._RESULTS.value, split,  # pylint: disable=protected-access
                      f'{nwucla.run_key(setting, stream)}.scores.npz')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: run benchmarks/nwucla.py --split={split} '
                            f'--settings={setting} --streams={stream} first')
  return nwucla.load_scores(path)


def pooled(per_seed: dict[str, dict[str, ensemble.RunScores]], view: str,
           stream: str) -> ensemble.RunScores:
  """Every seed's scores of one view as one member (clip ids '<seed>/<clip>')."""
  seeds = sorted(per_seed)
  runs = [per_seed[s][view] for s in seeds]
  return ensemble.RunScores(
      f'{stream} (seeds {", ".join(seeds)})', 1.0, np.concatenate([r.logits for r in runs]),
      np.concatenate([r.labels for r in runs]),
      np.concatenate([[f'{s}/{c}' for c in r.clip_ids] for s, r in zip(seeds, runs)]),
      runs[0].eval_split)


def weighted_top1(members: list[dict[str, dict[str, ensemble.RunScores]]], seed: str,
                  view: str, weights: list[float]) -> float:
  runs = [ensemble.RunScores(m[seed][view].workdir, w, m[seed][view].logits,
                             m[seed][view].labels, m[seed][view].clip_ids,
                             m[seed][view].eval_split) for m, w in zip(members, weights)]
  probs, labels, _ = ensemble.combine(runs)
  return round(float(metrics.classification_metrics(probs, labels)['top1']), 2)


def fitted_record(setting: str, streams: list[str]) -> dict[str, Any]:
  """The fitted weights per way of scoring, and the test runs' ensemble Top-1 per seed with the
  fitted, the fixed and equal weights (mean +- std over seeds)."""
  selection = [scores('selection', setting, s) for s in streams]
  test = [scores('test', setting, s) for s in streams]
  fixed = [nwucla.DEFAULT_WEIGHTS[s] for s in streams]
  out: dict[str, Any] = {'setting': setting, 'streams': streams,
                         'fixed_weights': dict(zip(streams, fixed)), 'views': {}}
  for view in nwucla.VIEWS:
    weights, report = ensemble.fit_weights([pooled(m, view, s)
                                            for m, s in zip(selection, streams)])
    seeds = sorted(test[0])
    rows = {seed: {'fitted': weighted_top1(test, seed, view, list(weights)),
                   'fixed': weighted_top1(test, seed, view, fixed),
                   'equal': weighted_top1(test, seed, view, [1.0] * len(streams))}
            for seed in seeds}
    out['views'][view] = {
        'fitted_weights': {s: round(float(w), 3) for s, w in zip(streams, weights)},
        'fit': report, 'test_top1_per_seed': rows,
        **{f'test_top1_{kind}': nwucla.mean_std([r[kind] for r in rows.values()])
           for kind in ('fitted', 'fixed', 'equal')},
    }
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  result = {'benchmark': 'nwucla stream weights fitted on view 2',
            'git_commit': common.git_commit(),
            'runs': [fitted_record(setting, nwucla._STREAMS.value)  # pylint: disable=protected-access
                     for setting in nwucla._SETTINGS.value]}  # pylint: disable=protected-access
  common.write_json(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)

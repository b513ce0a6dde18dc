"""The entity router of trained runs: how decided it is, and which path each body part takes.

    python benchmarks/routing.py --runs=/tmp/nwucla_runs/test/base__joint__seeds0-2 \\
        --out=benchmarks/results/routing_nwucla.json

For every run directory given (a run of several seeds counts each seed), from its
eval_outputs.npz: the router's entropy per entity in bits (1: an even 0.5 / 0.5 blend, 0: one
path only), the share of clips whose larger weight exceeds 0.95, the mean ST share per entity,
and the mean ST share per class and entity (`metrics.routing_statistics`); per run directory,
how much the per-entity ST share moves from seed to seed (`across_seeds`), also for the runs of
earlier outputs of this script (`--earlier`, when their work directories are gone).
"""

from __future__ import annotations

import json
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # pylint: disable=wrong-import-position

from micro_dualnet_jax import metrics  # pylint: disable=wrong-import-position
from micro_dualnet_jax.rundir import EVAL_OUTPUTS_FILE, RunDir  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

_RUNS = flags.DEFINE_list('runs', [], 'Run directories (or runs of several seeds).')
_OUT = flags.DEFINE_string('out', None, 'Where the JSON goes.')
_EARLIER = flags.DEFINE_list('earlier', [], 'JSON files this script wrote before: their runs '
                             '(work directories since removed) are summarised across seeds too.')


def describe(run: RunDir) -> dict:
  entities = list(run.config().model.entity_names)
  classes = run.class_names()
  with np.load(run.file(EVAL_OUTPUTS_FILE)) as outputs:
    weights, labels = outputs['routing_weights'], outputs['labels']
  stats = metrics.routing_statistics(weights, labels, len(classes))
  by_entity = lambda values: {e: round(float(v), 3) for e, v in zip(entities, values)}
  return {'workdir': run.path, 'entropy_bits': by_entity(stats['entropy']),
          'entropy_mean_bits': round(stats['entropy_mean'], 3),
          'near_binary': by_entity(stats['near_binary']), 'st_share': by_entity(stats['st_share']),
          'st_share_by_class': {c: by_entity(row) for c, row in
                                zip(classes, stats['st_share_by_class'])}}


def across_seeds(described: list[dict]) -> dict:
  """How stable the routing of one run's seeds is (`metrics.routing_seed_spread`)."""
  entities = list(described[0]['st_share'])
  spread = metrics.routing_seed_spread([[d['st_share'][e] for e in entities] for d in described],
                                       [d['entropy_mean_bits'] for d in described])
  return {'seeds': len(described),
          'st_share_seed_std': {e: round(float(v), 3)
                                for e, v in zip(entities, spread['st_share_seed_std'])},
          'st_share_seed_std_mean': round(spread['st_share_seed_std_mean'], 3),
          'entropy_mean_bits': round(spread['entropy_mean'], 3),
          'entropy_mean_bits_seed_std': round(spread['entropy_seed_std'], 3)}


def main(argv):
  del argv
  result = {'runs': [], 'across_seeds': {}}
  for path in _RUNS.value:
    described = [describe(seed_run) for seed_run in RunDir(path).seed_runs()]
    result['runs'] += described
    result['across_seeds'][path] = across_seeds(described)
  for earlier in _EARLIER.value:
    with open(earlier) as f:
      by_run: dict[str, list[dict]] = {}
      for described in json.load(f)['runs']:   # <run>/seed_<s> -> <run>
        by_run.setdefault(os.path.dirname(described['workdir']), []).append(described)
    for path, described in by_run.items():
      result['runs'] += described
      result['across_seeds'][f'{path} (from {os.path.basename(earlier)})'] = across_seeds(described)
  common.write_json(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)

"""The paper's claims on the synthetic micro-action set at its full budget, seeds in one run.

  python benchmarks/ablation_synthetic.py --num_seeds=3 --out=benchmarks/results/claims_synthetic.json

Every variant is `main.py --config=configs/synthetic.py` (1000 steps of batch 32) with
`--config.num_seeds=N` and its overrides:
  st, ts                 one path only (no MAC)
  dual_mean, dual_static, dual_routing   both paths, fixed 0.5 / 0.5, learned per-entity
                         constants, the input-dependent router (no MAC)
  dual_routing_mac       the full model (router + InfoNCE MAC)
  dual_routing_kl        router + the 'kl' MAC form (per-path heads, CE + symmetric KL)
Per variant the JSON (`<results>/<variant>.json`, read back when it exists, so a stopped run
goes on) holds every seed's Top-1, the accuracy on position- and motion-defined classes, the
router's statistics (`metrics.routing_statistics`) and, per class, the ST share of its defining
entity; the aggregate file has the mean +- std per variant.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from micro_dualnet_jax import ensemble, metrics  # pylint: disable=wrong-import-position
from micro_dualnet_jax.data import synthetic  # pylint: disable=wrong-import-position
from micro_dualnet_jax.rundir import RunDir  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

VARIANTS = common.CLAIM_VARIANTS

_VARIANTS = flags.DEFINE_list('variants', list(VARIANTS), 'Variants to run.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds per variant (one run).')
_RUNS = flags.DEFINE_string('workdir_root', '/tmp/mdn_claims_synthetic', 'Work directories.')
_RESULTS = flags.DEFINE_string('results', os.path.join(_ROOT, 'benchmarks', 'results',
                                                       'claims_synthetic'), 'Per-variant JSON.')
_OUT = flags.DEFINE_string('out', None, 'The aggregate JSON.')


def type_accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Top-1 (%) over position-defined and over motion-defined classes."""
  types = np.array([c.type for c in synthetic.CLASSES])
  correct = predictions == labels
  return {kind: round(float(100 * correct[types[labels] == kind].mean()), 2)
          for kind in ('position', 'motion')}


def seed_record(folder: str, entity_names: list[str]) -> dict:
  scores = ensemble.load_run(folder)
  with np.load(os.path.join(folder, 'eval_outputs.npz')) as outputs:
    routing = outputs['routing_weights']
  predictions = scores.logits.argmax(-1)
  stats = metrics.routing_statistics(routing, scores.labels, len(synthetic.CLASSES))
  defining = {c.name: {'type': c.type, 'entity': c.entity, 'st_share': round(float(
      stats['st_share_by_class'][i, entity_names.index(c.entity)]), 3)}
              for i, c in enumerate(synthetic.CLASSES)}
  return {'top1': round(float(100 * np.mean(predictions == scores.labels)), 2),
          **type_accuracy(predictions, scores.labels),
          'router_entropy_bits': {e: round(float(h), 3) for e, h in
                                  zip(entity_names, stats['entropy'])},
          'router_near_binary': {e: round(float(b), 3) for e, b in
                                 zip(entity_names, stats['near_binary'])},
          'defining_entity_st_share': defining}


def run_variant(name: str) -> dict:
  out_path = os.path.join(_RESULTS.value, f'{name}__seeds{_NUM_SEEDS.value}.json')
  if os.path.exists(out_path):
    with open(out_path) as f:
      return json.load(f)
  workdir = os.path.join(_RUNS.value, name)
  command = [sys.executable, os.path.join(_ROOT, 'main.py'),
             f'--config={os.path.join(_ROOT, "configs", "synthetic.py")}', f'--workdir={workdir}',
             f'--config.num_seeds={_NUM_SEEDS.value}', '--config.eval_every_steps=0',
             f'--config.data.data_dir={os.path.join(_RUNS.value, "data")}',
             *[f'--config.{k}={v}' for k, v in VARIANTS[name].items()]]
  os.makedirs(_RUNS.value, exist_ok=True)
  start = time.time()
  with open(f'{workdir}.log', 'a') as log:
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT)
  if code:
    raise RuntimeError(f'{name} failed (exit {code}); see {workdir}.log')
  run = RunDir(workdir)
  entity_names = list(run.seed_runs()[0].config().model.entity_names)
  seeds = {str(s): seed_record(r.path, entity_names)
           for s, r in zip(run.seeds(), run.seed_runs())}
  top1 = np.array([v['top1'] for v in seeds.values()])
  record = {'variant': name, 'overrides': VARIANTS[name], 'command': ' '.join(command[1:]),
            'wall_s': round(time.time() - start, 1), 'python': platform.python_version(),
            'jax': metadata.version('jax'), 'git_commit': common.git_commit(), 'seeds': seeds,
            'top1_mean': round(float(top1.mean()), 2),
            'top1_std': round(float(top1.std(ddof=1)), 2) if len(top1) > 1 else 0.0,
            'config': run.raw_config()}
  common.write_json(record, out_path, echo=False)
  return record


def main(argv):
  del argv
  table = {}
  for name in _VARIANTS.value:
    if name not in VARIANTS:
      raise app.UsageError(f'unknown variant {name!r}; choose from {sorted(VARIANTS)}')
    record = run_variant(name)
    mean = lambda key: round(float(np.mean([s[key] for s in record['seeds'].values()])), 2)
    table[name] = {'top1_mean': record['top1_mean'], 'top1_std': record['top1_std'],
                   'position_mean': mean('position'), 'motion_mean': mean('motion'),
                   'per_seed_top1': {s: v['top1'] for s, v in record['seeds'].items()},
                   'wall_s': record['wall_s']}
    print(json.dumps({'variant': name, **table[name]}), flush=True)
  common.write_json({'benchmark': 'claims on the synthetic set (configs/synthetic.py, full budget)',
                     'num_seeds': _NUM_SEEDS.value, 'variants': table}, _OUT.value, echo=False)


if __name__ == '__main__':
  app.run(main)

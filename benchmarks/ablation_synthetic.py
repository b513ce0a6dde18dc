"""Ablation on the synthetic micro-action set: which path does each kind of action need?

  python benchmarks/ablation_synthetic.py --seeds=0,1,2 --steps=600

Trains, under one budget (same steps, batch, schedule and data) and for every seed:
  st            ST path only (no MAC)
  ts            TS path only (no MAC)
  dual_mean     both paths, fixed 0.5 / 0.5 fusion (no MAC)
  dual_routing  both paths, per-entity router (no MAC)
  dual_routing_mac  both paths, router, MAC loss (the full model)
and writes benchmarks/results/ablation_synthetic.json: per variant the mean and std of Top-1
over seeds and the accuracy on position-defined and motion-defined classes; plus, for the full
model, the learned routing weight of each class's defining entity beside the class's
ground-truth type (table in the JSON, PNG beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from micro_dualnet_jax import hostenv  # pylint: disable=wrong-import-position

if __name__ == '__main__':
  hostenv.reexec_with_tuned_malloc()  # train as main.py does

from configs import synthetic as synthetic_config  # pylint: disable=wrong-import-position
from micro_dualnet_jax import report, steps, train  # pylint: disable=wrong-import-position
from micro_dualnet_jax.data import synthetic  # pylint: disable=wrong-import-position

VARIANTS = {
    'st': dict(paths='st', fusion='routing', mac='none'),
    'ts': dict(paths='ts', fusion='routing', mac='none'),
    'dual_mean': dict(paths='dual', fusion='mean', mac='none'),
    'dual_routing': dict(paths='dual', fusion='routing', mac='none'),
    'dual_routing_mac': dict(paths='dual', fusion='routing', mac='infonce'),
}


def variant_config(name: str, seed: int, steps: int, data_dir: str):
  config = synthetic_config.get_config()
  v = VARIANTS[name]
  config.model.paths, config.model.fusion, config.loss.mac = v['paths'], v['fusion'], v['mac']
  config.seed = seed
  config.data.data_dir = data_dir
  config.num_train_steps = steps
  config.eval_every_steps = 0
  config.checkpoint_every_steps = steps
  config.log_every_steps = max(steps // 4, 1)
  return config


def type_accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Top-1 (%) over position-defined and over motion-defined classes."""
  types = np.array([c.type for c in synthetic.CLASSES])
  correct = predictions == labels
  return {kind: float(100 * correct[types[labels] == kind].mean())
          for kind in ('position', 'motion')}


def defining_entity_routing(routing: np.ndarray, labels: np.ndarray,
                            entity_names: list[str]) -> list[dict]:
  """Per class: mean ST weight of its defining entity over its test clips, and its type."""
  rows = []
  for index, cls in enumerate(synthetic.CLASSES):
    k = entity_names.index(cls.entity)
    rows.append({'class': cls.name, 'type': cls.type, 'entity': cls.entity,
                 'st_weight': float(routing[labels == index, k, 0].mean())})
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--steps', type=int, default=600)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--workdir', default=os.path.join(tempfile.gettempdir(), 'mdn_ablation'))
  parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results',
                                                    'ablation_synthetic.json'))
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  data_dir = os.path.join(args.workdir, 'data')
  runs, routing_rows = {}, None
  for name in args.variants.split(','):
    for seed in seeds:
      workdir = os.path.join(args.workdir, f'{name}_seed{seed}')
      config = variant_config(name, seed, args.steps, data_dir)
      start = time.time()
      summary = train.train_and_evaluate(config, workdir)
      outputs = np.load(os.path.join(workdir, 'eval_outputs.npz'))
      predictions = outputs['logits'].argmax(-1)
      runs.setdefault(name, []).append({
          'seed': seed, 'top1': summary['final']['top1'], 'wall_s': round(time.time() - start),
          **type_accuracy(predictions, outputs['labels'])})
      if name == 'dual_routing_mac' and seed == seeds[0]:
        entities = list(steps.model_config(config).entity_names)
        routing_rows = defining_entity_routing(outputs['routing_weights'], outputs['labels'],
                                               entities)
        report.plot_routing_weights(
            outputs['routing_weights'], entities,
            os.path.splitext(args.out)[0] + '_routing.png',
            class_names=[f'{c.name} ({c.type[0]})' for c in synthetic.CLASSES],
            labels=outputs['labels'])
      print(json.dumps({'variant': name, **runs[name][-1]}), flush=True)
  table = {}
  for name, results in runs.items():
    column = lambda key: np.array([r[key] for r in results])
    table[name] = {
        'top1_mean': round(float(column('top1').mean()), 2),
        'top1_std': round(float(column('top1').std()), 2),
        'position_top1_mean': round(float(column('position').mean()), 2),
        'motion_top1_mean': round(float(column('motion').mean()), 2),
        'runs': results}
  result = {'steps': args.steps, 'seeds': seeds, 'batch_size': 32,
            'command': 'python benchmarks/ablation_synthetic.py ' + ' '.join(sys.argv[1:]),
            'variants': table, 'routing_by_class': routing_rows}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: {m: v[m] for m in ('top1_mean', 'top1_std', 'position_top1_mean',
                                          'motion_top1_mean')} for k, v in table.items()}))


if __name__ == '__main__':
  main()

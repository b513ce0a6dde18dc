"""The same train-step benchmark on two checkouts, alternately, in one session (A/B).

    python benchmarks/ab_train_step.py --before=/tmp/before_clone --repeats=2 \\
        --out=benchmarks/results/train_step_nnx_dropout_before_after.json -- \\
        --config=configs/default.py --config.batch_size=32 --dtypes=float32 --skip_eval

Runs `benchmarks/train_step.py ARGS` from the `--before` tree and from this one, alternating
(before, after, before, after, ...), so both see the same machine state, and reports each run's
samples/s and the ratio of the medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
  args = sys.argv[1:]
  split = args.index('--') if '--' in args else len(args)
  own, bench_args = args[:split], args[split + 1:]
  options = dict(item.lstrip('-').split('=', 1) for item in own)
  before, repeats, out = options['before'], int(options.get('repeats', 2)), options.get('out')
  runs = {'before': [], 'after': []}
  for _ in range(repeats):
    for name, tree in (('before', before), ('after', _ROOT)):
      done = subprocess.run([sys.executable, os.path.join(tree, 'benchmarks', 'train_step.py'),
                             *bench_args], cwd=tree, capture_output=True, text=True, check=True)
      result = json.loads(done.stdout[done.stdout.index('{'):])
      for dtype, variant in result['variants'].items():
        runs[name].append({'dtype': dtype, 'samples_per_s': variant['train']['samples_per_s'],
                           'step_s_median': variant['train']['step_s_median']})
  summary = {'benchmark': 'train_step before/after', 'before_tree': before, 'after_tree': _ROOT,
             'args': bench_args, 'runs': runs}
  for dtype in {r['dtype'] for r in runs['after']}:
    med = {k: statistics.median(r['samples_per_s'] for r in v if r['dtype'] == dtype)
           for k, v in runs.items()}
    summary[f'{dtype}_after_over_before'] = round(med['after'] / med['before'], 3)
  text = json.dumps(summary, indent=1)
  print(text)
  if out:
    with open(out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  main()

"""benchmarks/nwucla.py: run names from --set values, and the device its run JSON names.

benchmarks/nwucla.py and benchmarks/claims.py both define absl flags named `num_seeds`, and absl
refuses a flag defined twice in one process, so each check imports nwucla.py in a fresh Python
process (tests/test_claims_rule.py imports claims.py into pytest's own).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, os, sys
sys.path.insert(0, 'benchmarks')
import numpy as np
import nwucla
"""


def _run(code: str, *flags: str) -> dict:
  """Runs `code` after importing benchmarks/nwucla.py with `flags` parsed; returns the JSON it
  prints last."""
  argv = ['nwucla.py', *flags]
  script = _PRELUDE + f'nwucla.flags.FLAGS({argv!r})\n' + textwrap.dedent(code)
  done = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, check=False, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_run_name_is_one_path_component_whatever_set_holds():
  # A data_dir in --set made the run's JSON and work directory nested folders before bff65ed.
  out = _run("""
      print(json.dumps({'key': nwucla.run_key('base', 'joint')}))
      """, '--set=data.data_dir=/tmp/nw runs/v1.2', '--set=model.width=64', '--seed=1',
             '--num_seeds=2')
  assert out['key'] == 'base__joint__seeds1-2__data_data_dir-_tmp_nw_runs_v1_2__model_width-64'
  assert os.sep not in out['key']


def test_run_json_names_the_device_of_the_run(tmp_path):
  # The run JSON said 'cpu' whatever the run trained on before bff65ed; it now copies the
  # device the run's summary.json records. main.py is replaced by a fake finished run of 2 seeds.
  out = _run("""
      from micro_dualnet_jax import ensemble
      from micro_dualnet_jax.config import RunConfig
      from micro_dualnet_jax.rundir import RunDir
      from configs import smoke
      config = RunConfig.from_config_dict(smoke.get_config())

      def outputs(folder, logits):
        os.makedirs(folder, exist_ok=True)
        np.savez(os.path.join(folder, ensemble.OUTPUTS_FILE), logits=logits,
                 labels=np.array([0, 1, 2]), clip_ids=np.array(['a', 'b', 'c']),
                 eval_split='view2')

      def fake_main(command, **kwargs):
        workdir = next(c.split('=', 1)[1] for c in command if c.startswith('--workdir='))
        run = RunDir(workdir)
        run.write(config, kind='seeds', seeds=[0, 1], package_version='test', class_names=[])
        for seed, seed_run in zip([0, 1], [RunDir(os.path.join(workdir, f'seed_{s}'))
                                           for s in (0, 1)]):
          seed_run.write(config, kind='run', seeds=[seed], package_version='test',
                         class_names=[])
          logits = np.eye(10)[[0, 1, seed + 1]] * 5.0   # NW-UCLA: 10 classes
          outputs(seed_run.path, logits)
          outputs(os.path.join(seed_run.path, 'views_c1'), logits)
        run.write_summary({'step': 10, 'wall_time_s': 1.5, 'device': 'gpu: NVIDIA H200'})
        return 0

      nwucla.subprocess.call = fake_main
      record = nwucla.run_one('base', 'joint')
      print(json.dumps({'device': record['device'], 'top1': record['top1']}))
      """, f'--workdir_root={tmp_path / "runs"}', f'--results={tmp_path / "results"}',
             '--num_seeds=2', '--split=selection')
  assert out['device'] == 'gpu: NVIDIA H200'
  # Seed 0 is right on 3 of 3 clips, seed 1 on 2 of 3 (66.67): the record is computed from the
  # fake run's outputs, mean and std of the two rounded figures.
  assert out['top1'] == {'mean': 83.34, 'std': 23.57}


def test_weights_fitted_on_view2_scores_are_applied_to_the_test_runs(tmp_path):
  # benchmarks/nwucla_weights.py on hand-made scores files of two streams, two seeds: joint is
  # right on 3 of 4 clips, bone confidently wrong on 2; equal (and the fixed 0.6 / 0.6) weights
  # get 2 of 4, weights (0.7, 0.3) all 4 (tests/test_ensemble.py has the same case).
  out = _run("""
      import nwucla_weights
      from micro_dualnet_jax import ensemble
      probs = {'joint': [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]],
               'bone': [[0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4],
                        [0.9, 0.05, 0.05]]}
      for split, eval_split, prefix in (('selection', 'view2', 'v2_'), ('test', 'test', 'v3_')):
        for stream in ('joint', 'bone'):
          run = ensemble.RunScores('x', 1.0, np.log(np.asarray(probs[stream])),
                                   np.array([0, 1, 2, 0]),
                                   np.array([f'{prefix}{i}' for i in range(4)]), eval_split)
          folder = os.path.join(nwucla._RESULTS.value, split)
          os.makedirs(folder, exist_ok=True)
          nwucla.save_scores(
              os.path.join(folder, nwucla.run_key('base', stream) + '.scores.npz'),
              {seed: {'views': run, 'one_view': run} for seed in ('0', '1')})
      print(json.dumps(nwucla_weights.fitted_record('base', ['joint', 'bone'])))
      """, f'--results={tmp_path}', '--num_seeds=2')
  for view in ('views', 'one_view'):
    record = out['views'][view]
    assert record['fitted_weights'] == {'joint': 0.7, 'bone': 0.3}
    assert record['fit']['heldout_split'] == 'view2' and record['fit']['num_heldout_clips'] == 8
    assert record['fit']['heldout_top1'] == 100.0
    assert record['test_top1_fitted'] == {'mean': 100.0, 'std': 0.0}
    assert record['test_top1_fixed'] == record['test_top1_equal'] == {'mean': 50.0, 'std': 0.0}

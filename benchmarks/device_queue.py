"""The NW-UCLA study as a priority queue of `benchmarks/nwucla.py` runs, in parallel, to a deadline.

    python benchmarks/device_queue.py --deadline_s=300 --parallel=4 --out=$OUT \\
        --manual_dir=/tmp/nw_ucla

Made for a lent accelerator (`benchmarks/device.sh`): the jobs of QUEUE start in order, at most
`--parallel` at a time, each `nwucla.py` in a process group of its own (so that the deadline ends
it whole, its main.py children included). After every job that ends, the run JSONs and scores
files it wrote are packed into `<out>/nwucla_results.tar.gz` (one file, whatever the number of
runs) and the queue's state into `<out>/device_queue.json`; at the deadline the running jobs are
stopped and their state is written too. The last output is a table of the jobs.

The queue (the NW-UCLA issue's order): the four streams on view 3 (the ensemble), the training
length and SkateFormer's random frames on view 2, then seeds 3-7 of every claim variant on view
2, then the router remedy, the device-pipeline check and the view-2 runs of the other streams
(for fitted ensemble weights). Runs whose JSON is already under --results are read back, not
trained again, so the queue starts where the CPU sessions stopped. With --dry_run every run is
tiny (a few steps of a small model), to rehearse the script on a CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, 'benchmarks'))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')
# dual_routing_mac is base pinned to the host loader (claims.py reads both as the full model).
CLAIM_SETTINGS = ('dual_routing_mac', 'st', 'ts', 'dual_mean', 'dual_static', 'dual_routing',
                  'dual_routing_kl')
# (name, nwucla.py arguments), highest priority first.
QUEUE: list[tuple[str, list[str]]] = [
    *[(f'test/base/{s}', ['--split=test', '--settings=base', f'--streams={s}'])
      for s in STREAMS],
    ('selection/epochs200', ['--split=selection', '--settings=epochs200', '--streams=joint']),
    ('selection/random_frames', ['--split=selection', '--settings=random_frames',
                                 '--streams=joint']),
    # 400 epochs only if 200 had won on view 2; it did not (nwucla_length_sweep.json).
    *[(f'selection/{v}/seeds3-7', ['--split=selection', f'--settings={v}', '--streams=joint',
                                   '--seed=3', '--num_seeds=5']) for v in CLAIM_SETTINGS],
    ('selection/router_entropy01', ['--split=selection', '--settings=router_entropy01',
                                    '--streams=joint']),
    ('selection/router_entropy001', ['--split=selection', '--settings=router_entropy001',
                                     '--streams=joint']),
    ('selection/device_pipeline', ['--split=selection', '--settings=device_pipeline',
                                   '--streams=joint']),
    # View-2 scores of the other streams, for the ensemble weights fitted on view 2
    # (nwucla_weights.py).
    *[(f'selection/base/{s}', ['--split=selection', '--settings=base', f'--streams={s}'])
      for s in STREAMS[1:]],
]
DRY_RUN_SETS = ['--set=num_train_steps=6', '--set=num_epochs=0', '--set=eval_every_steps=0',
                '--set=model.width=16', '--set=model.num_heads=2', '--set=model.num_frames=8',
                '--set=checkpoint_every_steps=6', '--num_seeds=2']

_DEADLINE = flags.DEFINE_float('deadline_s', 300.0, 'Seconds from the start to stop at.')
_PARALLEL = flags.DEFINE_integer('parallel', 4, 'Jobs at a time.')
_OUT = flags.DEFINE_string('out', os.path.join(_ROOT, 'benchmarks', 'results', 'device'),
                           'Where the packed results and the state go.')
_RESULTS = flags.DEFINE_string('results', os.path.join(_ROOT, 'benchmarks', 'results',
                                                       'nwucla'), 'nwucla.py --results.')
_WORKDIRS = flags.DEFINE_string('workdir_root', '/tmp/nwucla_device_runs',
                                'nwucla.py --workdir_root.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'The NW-UCLA folder.')
_JOBS = flags.DEFINE_integer('max_jobs', 0, 'Run only the first N jobs of the queue (0: all).')
_DRY = flags.DEFINE_bool('dry_run', False, 'Tiny runs, to rehearse on a CPU.')


class Job:
  """One nwucla.py run in a process group of its own."""

  def __init__(self, name: str, args: list[str]):
    self.name, self.args = name, args
    self.state, self.process, self.start, self.wall_s, self.code = 'queued', None, None, None, None
    self.log = os.path.join(_WORKDIRS.value, 'logs', name.replace('/', '__') + '.log')

  def launch(self) -> None:
    os.makedirs(os.path.dirname(self.log), exist_ok=True)
    command = [sys.executable, os.path.join(_ROOT, 'benchmarks', 'nwucla.py'), *self.args,
               f'--results={_RESULTS.value}', f'--workdir_root={_WORKDIRS.value}']
    if _MANUAL_DIR.value:
      command.append(f'--manual_dir={_MANUAL_DIR.value}')
    if _DRY.value:
      command += DRY_RUN_SETS
    with open(self.log, 'w') as log:
      self.process = subprocess.Popen(command, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    self.state, self.start = 'running', time.time()

  def poll(self) -> bool:
    """True when it has just ended."""
    if self.state != 'running' or self.process.poll() is None:
      return False
    self.code, self.wall_s = self.process.returncode, round(time.time() - self.start, 1)
    self.state = 'done' if self.code == 0 else 'failed'
    return True

  def stop(self) -> None:
    """Ends the job's whole process group (SIGTERM, then SIGKILL after 10 s)."""
    if self.state != 'running':
      return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
      try:
        os.killpg(self.process.pid, sig)
      except ProcessLookupError:
        break
      try:
        self.process.wait(wait)
        break
      except subprocess.TimeoutExpired:
        continue
    self.state, self.wall_s = 'stopped at the deadline', round(time.time() - self.start, 1)

  def record(self) -> dict[str, Any]:
    out = {'name': self.name, 'args': self.args, 'state': self.state, 'wall_s': self.wall_s,
           'exit_code': self.code}
    if self.state == 'failed':
      with open(self.log) as f:
        out['log_tail'] = f.read()[-1500:]
    return out


def pack(jobs: list[Job], started: float) -> None:
  """Every result file under --results (JSON and scores) into one archive, and the state."""
  os.makedirs(_OUT.value, exist_ok=True)
  archive = os.path.join(_OUT.value, 'nwucla_results.tar.gz')
  with tarfile.open(archive + '.tmp', 'w:gz') as tar:
    if os.path.isdir(_RESULTS.value):
      tar.add(_RESULTS.value, arcname='nwucla')
  os.replace(archive + '.tmp', archive)
  common.write_json({'elapsed_s': round(time.time() - started, 1), 'dry_run': _DRY.value,
                     'parallel': _PARALLEL.value, 'jobs': [job.record() for job in jobs]},
                    os.path.join(_OUT.value, 'device_queue.json'), echo=False)


def table(jobs: list[Job]) -> str:
  lines = [f'{"job":<34} {"state":<24} {"wall s":>8}  top1 (mean +- std)']
  for job in jobs:
    top1 = ''
    if job.state == 'done':
      with open(job.log) as f:
        found = [json.loads(line) for line in f if line.startswith('{"run"')]
      top1 = ', '.join(f'{r["mean"]:.2f} +- {r["std"]:.2f}' for r in found)
    lines.append(f'{job.name:<34} {job.state:<24} {job.wall_s or "":>8}  {top1}')
  return '\n'.join(lines)


def main(argv):
  del argv
  started = time.time()
  queue = QUEUE[:_JOBS.value] if _JOBS.value else QUEUE
  jobs = [Job(name, args) for name, args in queue]
  try:
    while any(job.state in ('queued', 'running') for job in jobs):
      if time.time() - started > _DEADLINE.value:
        break
      for job in jobs:
        if job.poll():
          pack(jobs, started)
      running = sum(job.state == 'running' for job in jobs)
      for job in jobs:
        if job.state == 'queued' and running < _PARALLEL.value:
          job.launch()
          running += 1
      time.sleep(1.0)
  finally:
    for job in jobs:
      job.stop()
    pack(jobs, started)
  print(table(jobs), flush=True)


if __name__ == '__main__':
  app.run(main)

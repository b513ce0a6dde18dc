"""Reliability at scale: multi-process training, crash-safe resume, failure modes.

Training runs here are real `python main.py` processes on the smoke config (12 steps, checkpoints
at 4, 8, 12), started, signalled and killed like a cluster scheduler would. The reference is one
uninterrupted process over 2 host devices: the two-process runs use one device each, so both
reduce gradients over the same 2 shards and must end bit-identical (they do; no tolerance).
"""

import glob
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess

import pytest

import runs
from configs import smoke
from support import typed
from micro_dualnet_jax import sharding, steps, train
from micro_dualnet_jax.rundir import RunDirError
from micro_dualnet_jax.checkpoint import (CHECKSUMS_KEY, Checkpointer, abstract_like, state_items,
                                          tree_checksum)
from runs import Run

STEPS = 12
OVERRIDES = (f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1')
pytestmark = pytest.mark.slow   # real main.py processes, several per test


def smoke_run(workdir, data_dir, log, *args, **kwargs) -> Run:
  """main.py on the smoke config (checkpoints at 4, 8, 12) in `workdir`."""
  return Run(['--config=configs/smoke.py', f'--workdir={workdir}',
              f'--config.data.data_dir={data_dir}', *OVERRIDES, *args], log, **kwargs)


@pytest.fixture(autouse=True)
def _no_stray_processes():
  yield
  runs.stop_all()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir, data_dir, tmp_path, tag: str, *args: str, **kwargs) -> list[Run]:
  address = f'127.0.0.1:{_free_port()}'
  return [smoke_run(workdir, data_dir, tmp_path / f'{tag}_{i}.log', *args, devices=1,
                    env={'JAX_COORDINATOR_ADDRESS': address, 'JAX_NUM_PROCESSES': '2',
                         'JAX_PROCESS_ID': str(i), 'JAX_CPU_COLLECTIVES_IMPLEMENTATION': 'gloo'},
                    **kwargs)
          for i in range(2)]


def _summary(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / 'summary.json').read_text())


def _state_checksum(workdir, step: int) -> str:
  """The sha256s of the whole train state (parameters, model RNG streams, optimizer state, step
  and augmentation RNG) saved at `step`."""
  checkpointer = Checkpointer(str(workdir), best_metric=None, async_save=False)
  try:
    return checkpointer.read_meta(step)[CHECKSUMS_KEY]
  finally:
    checkpointer.close()


@pytest.fixture(scope='module')
def reference(data_dir, tmp_path_factory):
  """An uninterrupted one-process run on 2 devices: (workdir, summary, per-step losses)."""
  workdir = tmp_path_factory.mktemp('reference')
  smoke_run(workdir, data_dir, workdir.parent / 'reference.log').finish()
  return workdir, _summary(workdir), runs.train_losses(workdir)


def test_two_processes_stop_together_resume_and_match_one_process(reference, data_dir, tmp_path):
  ref_dir, ref_summary, ref_losses = reference
  workdir = tmp_path / 'run'
  # SIGTERM reaches only process 1, while both wait after step 2: both must stop after that step
  # and save one checkpoint.
  procs = _two_processes(workdir, data_dir, tmp_path, 'first', pause_at=('step', 2))
  for run in procs:
    run.wait_paused('step', 2)
  procs[1].signal(signal.SIGTERM)
  for run in procs:
    run.release()
  outputs = [run.finish() for run in procs]
  for i, out in enumerate(outputs):
    assert f'jax.distributed: process {i} of 2 joined' in out
    assert 'on 2 device(s), 2 process(es)' in out
  assert 'Stopping early (received signal 15)' in outputs[1]
  assert 'Stopping early (another process received a signal)' in outputs[0]
  for out in outputs:
    assert re.findall(r'saved checkpoint at step (\d+)', out) == ['2']
  stop = 2
  assert runs.checkpoint_steps(workdir / 'checkpoints') == [stop]
  # The same command again on both processes finishes the run.
  procs = _two_processes(workdir, data_dir, tmp_path, 'second')
  outputs = [run.finish() for run in procs]
  assert all(f'Resuming from checkpoint at step {stop}' in out for out in outputs)
  assert 'summary:' in outputs[0] and 'summary:' not in outputs[1]   # process 0 writes outputs
  summary = _summary(workdir)
  assert (summary['processes'], summary['devices'], summary['step']) == (2, 2, STEPS)
  assert summary['param_checksum'] == ref_summary['param_checksum']
  assert summary['final'] == ref_summary['final']   # evaluation gathered from both processes
  assert len((workdir / 'predictions.csv').read_text().splitlines()) == 1 + 24
  assert runs.train_losses(workdir) == ref_losses
  assert _state_checksum(workdir, STEPS) == _state_checksum(ref_dir, STEPS)


def test_seeds_in_one_run_over_two_processes_match_one_process(data_dir, tmp_path):
  """num_seeds=2 on two processes of one device each ends bit-identical, seed by seed, to one
  process on two devices; SIGTERM to one process stops both after step 2 and the same command
  resumes."""
  seeds = ('--config.num_seeds=2', '--config.seed=3')
  single = tmp_path / 'single'
  smoke_run(single, data_dir, tmp_path / 'single.log', *seeds).finish()
  workdir = tmp_path / 'run'
  procs = _two_processes(workdir, data_dir, tmp_path, 'first', *seeds, pause_at=('step', 2))
  for run in procs:
    run.wait_paused('step', 2)
  procs[0].signal(signal.SIGTERM)
  for run in procs:
    run.release()
  for run in procs:
    run.finish()
  assert (runs.checkpoint_steps(workdir / 'seed_3' / 'checkpoints')
          == runs.checkpoint_steps(workdir / 'seed_4' / 'checkpoints') == [2])
  outputs = [run.finish() for run in _two_processes(workdir, data_dir, tmp_path, 'second',
                                                    *seeds)]
  assert all('Resuming from checkpoint at step 2' in out for out in outputs)
  got, want = _summary(workdir), _summary(single)
  for seed in ('3', '4'):
    assert got['seeds'][seed]['param_checksum'] == want['seeds'][seed]['param_checksum']
    assert got['seeds'][seed]['final'] == want['seeds'][seed]['final']
  for seed in ('seed_3', 'seed_4'):
    assert runs.train_losses(workdir / seed) == runs.train_losses(single / seed)


def test_sigkill_at_three_points_then_resume_matches_uninterrupted(reference, data_dir, tmp_path):
  ref_dir, ref_summary, ref_losses = reference
  workdir, checkpoints = tmp_path / 'run', tmp_path / 'run' / 'checkpoints'
  # 1. Killed during its first save (step 3 here): the data is written, the commit is not.
  run = smoke_run(workdir, data_dir, tmp_path / 'a.log', '--config.checkpoint_every_steps=3',
                  hang_commit=True)
  run.wait_for('TEST: checkpoint data written, commit pending')
  run.kill()
  assert (checkpoints / '3.orbax-checkpoint-tmp').is_dir()
  assert runs.checkpoint_steps(checkpoints) == []
  # 2. Killed between checkpoints, right after step 6. The restart ignored the half-written save
  #    (it started from scratch) and deleted it; step 3 is not one it saves, so only that cleanup
  #    removed it.
  run = smoke_run(workdir, data_dir, tmp_path / 'b.log', pause_at=('step', 6))
  run.wait_paused('step', 6)
  run.kill()
  assert 'Resuming' not in run.output()
  assert not (checkpoints / '3.orbax-checkpoint-tmp').exists()
  assert runs.checkpoint_steps(checkpoints) == [4]
  # 3. Killed after the last checkpoint, before the final evaluation and outputs.
  run = smoke_run(workdir, data_dir, tmp_path / 'c.log', pause_at=('final_eval', STEPS))
  run.wait_paused('final_eval', STEPS)
  run.kill()
  assert 'Resuming from checkpoint at step 4' in run.output()
  assert runs.checkpoint_steps(checkpoints) == [4, 8, 12]
  assert not (workdir / 'summary.json').exists()
  # 4. The same command once more completes the run.
  out = smoke_run(workdir, data_dir, tmp_path / 'd.log').finish()
  assert f'Resuming from checkpoint at step {STEPS}' in out
  assert _summary(workdir)['param_checksum'] == ref_summary['param_checksum']
  # Data order, augmentation RNG and optimizer state continued exactly: every step's loss, and
  # the whole final state, equal the uninterrupted run's.
  assert runs.train_losses(workdir) == ref_losses
  assert _state_checksum(workdir, STEPS) == _state_checksum(ref_dir, STEPS)
  assert not glob.glob(str(checkpoints / '*.orbax-checkpoint-tmp'))


def _restore(workdir: pathlib.Path):
  config = typed(smoke.get_config())
  mesh = sharding.make_mesh()
  tx, _ = steps.make_optimizer(config.optim, STEPS)
  _, state = steps.create_train_state(config.model, tx, mesh, config.run.seed)
  checkpointer = Checkpointer(str(workdir), best_metric=None, async_save=False)
  try:
    return checkpointer.restore(abstract_like(state_items(state)))
  finally:
    checkpointer.close()


def test_corrupted_latest_checkpoint_falls_back_and_says_so(reference, tmp_path, capsys):
  ref_dir, _, _ = reference
  # 1. Bit rot in the array data. Depending on where a byte lands, the storage layer fails to
  # decode the chunk, or (uncompressed bytes) orbax restores wrong values without complaint and the
  # stored checksum catches it, or (bytes no index points to any more) nothing changes. The
  # layout of the data files varies between runs, so one flipped byte may land in the last kind;
  # a byte every 4 KiB of every data file always hits saved arrays. The previous checkpoint is used.
  workdir = tmp_path / 'bitrot'
  shutil.copytree(ref_dir / 'checkpoints', workdir / 'checkpoints')
  for path in glob.glob(str(workdir / 'checkpoints' / str(STEPS) / '*' / 'ocdbt.*' / 'd' /
                            '*')):
    data = bytearray(pathlib.Path(path).read_bytes())
    for offset in range(len(data) // 10, len(data), 4096):
      data[offset] ^= 0xFF
    pathlib.Path(path).write_bytes(data)
  step, restored, meta = _restore(workdir)
  assert step == 8 and meta['step'] == 8
  assert {k: tree_checksum(v) for k, v in restored.items()} == meta[CHECKSUMS_KEY]
  printed = capsys.readouterr().out
  assert re.search(rf'WARNING: checkpoint at step {STEPS} in \S+ is unreadable \(.+\); falling '
                   r'back to the previous one', printed), printed
  # 2. Arrays that restore but are not what was saved: the checksum path, deterministically.
  workdir = tmp_path / 'mismatch'
  shutil.copytree(ref_dir / 'checkpoints', workdir / 'checkpoints')
  meta_file = workdir / 'checkpoints' / str(STEPS) / 'meta' / 'metadata'
  saved = json.loads(meta_file.read_text())
  saved[CHECKSUMS_KEY]['opt_state'] = '0' * len(saved[CHECKSUMS_KEY]['opt_state'])
  meta_file.write_text(json.dumps(saved))
  step, _, _ = _restore(workdir)
  assert step == 8
  printed = capsys.readouterr().out
  assert re.search(rf'WARNING: checkpoint at step {STEPS} in \S+ is unreadable \(ValueError: '
                   r'opt_state checksum \w+ differs from the \w+ saved with it\); falling back to '
                   r'the previous one', printed), printed


def _mount_tmpfs(path: pathlib.Path, size: str) -> None:
  path.mkdir()
  mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                         capture_output=True, text=True, timeout=30, check=False)
  if mount.returncode:
    pytest.skip(f'a small tmpfs (a disk that fills up) needs root: {mount.stderr.strip()}')


def _fill(path: pathlib.Path, leave_bytes: int) -> None:
  free = shutil.disk_usage(path).free
  with open(path / 'filler', 'ab') as f:
    f.write(b'\0' * max(free - leave_bytes, 0))


def test_full_disk_fails_clearly_and_keeps_the_last_checkpoint(reference, data_dir, tmp_path):
  ref_dir, _, _ = reference
  disk = tmp_path / 'disk'
  _mount_tmpfs(disk, '8m')
  try:
    workdir = disk / 'run'
    # A run that stopped after its checkpoint at step 4.
    shutil.copytree(ref_dir / 'checkpoints' / '4', workdir / 'checkpoints' / '4')
    shutil.copy(ref_dir / 'config.json', workdir / 'config.json')
    shutil.copy(ref_dir / 'run.json', workdir / 'run.json')
    # A disk with no room at all: refused at the start, before any work.
    _fill(disk, 0)
    with pytest.raises(train.TrainingError, match='not writable.*No space left on device'):
      train.train_and_evaluate(typed(smoke.get_config()), str(workdir))
    # Room for logs but not for a checkpoint: the run resumes, trains, and its save at step 8
    # fails with a message that says what is intact and what to do; exit status 2.
    os.remove(disk / 'filler')
    _fill(disk, 128 * 1024)
    out = smoke_run(workdir, data_dir, tmp_path / 'full.log').finish(returncode=2)
    assert 'Resuming from checkpoint at step 4' in out
    assert re.search(r'error: writing the checkpoint of step 8 to \S+/checkpoints failed \(.*No '
                     r'space left on device.*\); the checkpoints already there are intact '
                     r'\(latest: step 4\)\. Free disk space or fix the directory, then run the '
                     r'same command again to resume\.', out), out
    # The half-written save is not a checkpoint (and the next run deletes it, see the SIGKILL test).
    assert runs.checkpoint_steps(workdir / 'checkpoints') == [4]
  finally:
    subprocess.run(['umount', '-l', str(disk)], timeout=30, check=False)


def test_workdir_of_a_different_model_is_refused_by_name(reference, data_dir):
  ref_dir, _, _ = reference
  before = {p.name: p.stat().st_mtime_ns for p in ref_dir.iterdir()}
  config = smoke.get_config()
  config.data.data_dir = data_dir
  config.model.width = 24
  config.loss.mac = 'none'
  with pytest.raises(RunDirError) as error:
    train.train_and_evaluate(typed(config), str(ref_dir))
  assert 'model.width: 16 in the work directory, 24 now' in str(error.value)
  assert "loss.mac: 'infonce' in the work directory, 'none' now" in str(error.value)
  assert {p.name: p.stat().st_mtime_ns for p in ref_dir.iterdir()} == before   # untouched

"""Ctrl-C and SIGTERM (docs/workdir.md, "Ctrl-C and SIGTERM"): `interrupts.StopSignals` in this
process, then main.py interrupted at every point of a run, signals sent while it waits at exact
points (tests/runs.py), and the same command finishing bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

import runs
from configs import smoke
from support import smoke_config, typed
from micro_dualnet_jax import interrupts, report, sharding, steps, train
from micro_dualnet_jax.checkpoint import Checkpointer, abstract_like, state_items, tree_checksum
from runs import Run

ROOT = pathlib.Path(__file__).resolve().parents[1]
HANG_S = 120   # hang protection only


def _wait_for_python_handlers() -> None:
  """Runs bytecode in the main thread, where Python calls its signal handlers."""
  for _ in range(200):
    time.sleep(0.005)


def test_a_signal_is_acknowledged_while_the_main_thread_is_blocked(capfd):
  """The main thread sits in one system call with SIGINT masked, as it does inside a long XLA
  call: Python's handler cannot run there, and the watcher thread still says at once what will
  happen. The loop sees the request once the main thread runs Python again."""
  previous = signal.getsignal(signal.SIGINT)
  read_fd, write_fd = os.pipe()
  acknowledged_before_release = []

  def release():   # lets the main thread go once the acknowledgement is out (or after HANG_S)
    acknowledged_before_release.append(stop.received.wait(HANG_S))
    os.write(write_fd, b'g')

  with interrupts.StopSignals(exit_at_once=False) as stop:
    stop.can_save = True
    helper = threading.Thread(target=release)
    helper.start()   # before the mask: a thread inherits its creator's
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
      os.kill(os.getpid(), signal.SIGINT)
      os.read(read_fd, 1)
    finally:
      signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    helper.join()
    _wait_for_python_handlers()
    assert stop.signal == signal.SIGINT
  os.close(read_fd)
  os.close(write_fd)
  assert acknowledged_before_release == [True]
  assert signal.getsignal(signal.SIGINT) is previous   # put back
  assert capfd.readouterr().err == (
      'Ctrl-C: stopping after the current call of steps, then saving a checkpoint (Ctrl-C again '
      'to exit at once without saving)\n')


def test_ctrl_c_before_the_first_call_of_steps_interrupts_at_once(capfd):
  with pytest.raises(KeyboardInterrupt):
    with interrupts.StopSignals(exit_at_once=True) as stop:
      os.kill(os.getpid(), signal.SIGINT)
      _wait_for_python_handlers()
  assert stop.signal == signal.SIGINT
  assert stop.received.wait(HANG_S)
  assert 'Ctrl-C: stopping before the first training step (nothing to save yet)\n' in \
      capfd.readouterr().err


def test_sigterm_waits_for_a_checkpoint_and_a_second_signal_interrupts_a_library_caller(capfd):
  with pytest.raises(KeyboardInterrupt):
    with interrupts.StopSignals(exit_at_once=False) as stop:
      os.kill(os.getpid(), signal.SIGTERM)   # before the first call: SIGTERM still saves first
      _wait_for_python_handlers()
      assert stop.signal == signal.SIGTERM
      assert stop.received.wait(HANG_S)
      os.kill(os.getpid(), signal.SIGTERM)
      _wait_for_python_handlers()
  assert capfd.readouterr().err == (
      'SIGTERM: stopping after the current call of steps, then saving a checkpoint (SIGTERM '
      'again to exit at once without saving)\nSIGTERM again: interrupting (KeyboardInterrupt)\n')


def test_a_keyboard_interrupt_reaching_the_top_is_one_line_and_status_130():
  code = ('from micro_dualnet_jax import interrupts\n'
          'interrupts.exit_on_keyboard_interrupt()\n'
          'print("working", flush=True)\n'
          'raise KeyboardInterrupt\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=HANG_S, check=False)
  assert (done.returncode, done.stdout, done.stderr) == (
      130, 'working\n', interrupts.INTERRUPTED_MESSAGE + '\n')


@pytest.mark.slow
def test_a_run_interrupted_while_writing_its_outputs_writes_them_again(tmp_path, monkeypatch):
  """Ctrl-C among the final outputs (here in the last figure): the final checkpoint is
  committed and summary.json, which marks a run finished, is not written yet; the same call
  evaluates the final checkpoint again and writes everything."""
  config = smoke_config(str(tmp_path / 'tfds'))
  workdir = tmp_path / 'run'

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(report, 'plot_routing_weights', interrupted)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / 'summary.json').exists() and (workdir / 'eval_metrics.json').exists()
  assert runs.checkpoint_steps(workdir / 'checkpoints') == [4, 8]
  monkeypatch.undo()
  summary = train.train_and_evaluate(config, str(workdir))
  assert summary['step'] == 8 and (workdir / 'routing_weights.png').is_file()
  assert (workdir / 'summary.json').is_file()


# ----------------------------------------------------------------------------- main.py

STEPS = 12
OVERRIDES = (f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1')


@pytest.fixture(autouse=True)
def _no_stray_processes():
  yield
  runs.stop_all()


def _smoke_run(workdir, data_dir, log, *args, **kwargs) -> Run:
  """main.py on the smoke config (checkpoints at 4, 8, 12) in `workdir`."""
  return Run(['--config=configs/smoke.py', f'--workdir={workdir}',
              f'--config.data.data_dir={data_dir}', *OVERRIDES, *args], log, **kwargs)


def _restore_latest(workdir) -> tuple[int, dict[str, str]]:
  """The newest checkpoint that restores (its checksums checked by the restore) -> (step,
  checksums of what was restored)."""
  config = typed(smoke.get_config())
  tx, _ = steps.make_optimizer(config.optim, STEPS)
  _, state = steps.create_train_state(config.model, tx, sharding.make_mesh(), config.run.seed)
  checkpointer = Checkpointer(str(workdir), best_metric=None, async_save=False)
  try:
    step, restored, _ = checkpointer.restore(abstract_like(state_items(state)))
  finally:
    checkpointer.close()
  return step, {name: tree_checksum(item) for name, item in restored.items()}


@pytest.mark.slow
def test_ctrl_c_at_every_point_then_the_same_command_ends_bit_identical(tmp_path):
  data_dir = tmp_path / 'tfds'
  reference = tmp_path / 'reference'
  _smoke_run(reference, data_dir, tmp_path / 'reference.log').finish()
  workdir, checkpoints = tmp_path / 'run', tmp_path / 'run' / 'checkpoints'
  message = interrupts.INTERRUPTED_MESSAGE

  # 1. While main.py imports the mode's modules (jax among them): one line, 130, nothing written.
  run = _smoke_run(workdir, data_dir, tmp_path / 'a.log', pause_at=('import', 0))
  run.wait_paused('import', 0)
  run.signal(signal.SIGINT)
  out = run.finish(returncode=130)
  assert out.endswith(f'TEST: paused at import 0\n{message}\n'), out
  assert not workdir.exists()

  # 2. Before the first call of steps, where it compiles (the main thread blocked in C): the
  #    signal is acknowledged at once, the run stops when Python runs again. The work directory
  #    holds run.json and config.json, no checkpoint: the same command starts the run.
  run = _smoke_run(workdir, data_dir, tmp_path / 'b.log', pause_at=('train_start', 0),
                   block=True)
  run.wait_paused('train_start', 0)
  run.signal(signal.SIGINT)
  run.wait_for('Ctrl-C: stopping before the first training step (nothing to save yet)\n')
  run.release()
  out = run.finish(returncode=130)
  assert out.endswith(f'{message}\n') and 'Traceback' not in out, out
  assert sorted(p.name for p in workdir.iterdir()) == ['best', 'checkpoints', 'config.json',
                                                       'run.json']
  assert runs.checkpoint_steps(checkpoints) == []

  # 3. Mid-training, the main thread blocked in C after step 6: acknowledged while it is
  #    blocked, honoured at the end of that call: a checkpoint at step 6, status 130.
  run = _smoke_run(workdir, data_dir, tmp_path / 'c.log', pause_at=('step', 6), block=True)
  run.wait_paused('step', 6)
  run.signal(signal.SIGINT)
  run.wait_for('Ctrl-C: stopping after the current call of steps, then saving a checkpoint '
               '(Ctrl-C again to exit at once without saving)\n')
  assert 'Stopping early' not in run.output()   # the main thread has not run since the signal
  run.release()
  out = run.finish(returncode=130)
  assert 'Resuming' not in out   # the run of point 2 left no checkpoint: started from scratch
  assert 'Stopping early (received signal 2): saved checkpoint at step 6; run the same command ' \
      'again to resume.\n' in out
  assert runs.checkpoint_steps(checkpoints) == [4, 6]
  assert _restore_latest(workdir) == (6, runs.state_checksums(workdir, 6))

  # 4. Twice quickly, the second Ctrl-C while the asynchronous save of step 10 is in flight (its
  #    commit hangs): the process exits at once, 130; step 10 stays a temporary folder, and the
  #    last good checkpoint, step 8, restores.
  run = _smoke_run(workdir, data_dir, tmp_path / 'd.log', '--config.async_checkpoints=True',
                   pause_at=('step', 10), hang_commit=10)
  run.wait_paused('step', 10)
  run.signal(signal.SIGINT)
  run.wait_for('Ctrl-C: stopping after the current call of steps')
  run.release()
  run.wait_for('TEST: checkpoint data written, commit pending')
  run.signal(signal.SIGINT)
  out = run.finish(returncode=130)
  assert 'Resuming from checkpoint at step 6' in out
  assert out.endswith('Ctrl-C again: exiting now without saving; the checkpoints already '
                      'written are intact (a save still in progress is discarded by the next '
                      'run)\n'), out
  assert runs.checkpoint_steps(checkpoints) == [4, 6, 8]
  assert (checkpoints / '10.orbax-checkpoint-tmp').is_dir()
  assert _restore_latest(workdir) == (8, runs.state_checksums(workdir, 8))

  # 5. The same command finishes the run: every step's loss and the final state equal the
  #    uninterrupted run's.
  out = _smoke_run(workdir, data_dir, tmp_path / 'e.log').finish()
  assert 'Resuming from checkpoint at step 8' in out
  assert not (checkpoints / '10.orbax-checkpoint-tmp').exists()
  assert runs.train_losses(workdir) == runs.train_losses(reference)
  assert runs.state_checksums(workdir, STEPS) == runs.state_checksums(reference, STEPS)

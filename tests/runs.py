"""`python main.py` as a subprocess that tests start, pause, signal and kill at exact points.

`Run` starts main.py through `tests/paused_main.py`, which installs a `train_and_evaluate` hook:
with `pause_at=('step', 6)` the run stops right after training step 6 (before its checkpoint and
its signal check), prints `TEST: paused at step 6` and waits until the test calls `release()`.
A signal or SIGKILL sent while it waits lands at that point, whatever the machine's load. With
`block=True` the pause holds the main thread inside a system call with SIGINT and SIGTERM masked
there, as a long XLA call does: what the process does about a signal then, it does without
Python's handlers running in the main thread.
Every wait has a timeout (a hung child fails the test instead of hanging the suite) and every
child still running when the test ends is killed (the `stop_runs` fixture).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HARNESS = pathlib.Path(__file__).resolve().parent / 'paused_main.py'
# Hang protection only: nothing asserts how fast a run is. 180 s was too short for the
# two-process tests when CI ran at low priority beside a 2-core training job.
TIMEOUT_S = 420
LAUNCH_VARS = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
               'JAX_PROCESS_ID', 'SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES')

STARTED: list[subprocess.Popen] = []


class Run:
  """One main.py process; its output goes to `log`, which the test polls.

  Args:
    args: main.py flags.
    log: the output file.
    devices: host CPU devices of the process (XLA_FLAGS).
    env: extra environment variables.
    pause_at: (event, step) of `train.train_and_evaluate`'s hooks to stop at, e.g. ('step', 6),
      ('checkpoint', 12), ('final_eval', 12), ('train_start', 0); ('import', 0) stops before the
      mode's modules and jax are imported; several as a list.
    block: pauses block the main thread in a system call, signals masked there (see above).
    hang_commit: True: hang forever in orbax's commit of the first checkpoint (its data is
      written, the rename of `<step>.orbax-checkpoint-tmp` to `<step>` is not), printing
      `TEST: checkpoint data written, commit pending`; a step: in the commit of that step's
      checkpoint in checkpoints/ only.
  """

  def __init__(self, args: list[str], log: pathlib.Path, *, devices: int = 2,
               env: dict[str, str] | None = None,
               pause_at: tuple[str, int] | list[tuple[str, int]] | None = None,
               block: bool = False, hang_commit: bool | int = False):
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    base['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    pauses = [pause_at] if isinstance(pause_at, tuple) else list(pause_at or [])
    self.go = log.with_suffix('.go')
    base['MDN_TEST_PAUSE'] = ','.join(f'{event}:{step}' for event, step in pauses)
    base['MDN_TEST_GO'] = str(self.go)
    base['MDN_TEST_BLOCK'] = '1' if block else ''
    base['MDN_TEST_HANG_COMMIT'] = ('any' if hang_commit is True else
                                    str(hang_commit) if hang_commit is not False else '')
    self.block = block
    if block:
      os.mkfifo(f'{self.go}.fifo')
    self.log = log
    with open(log, 'w') as out:
      self.proc = subprocess.Popen([sys.executable, str(HARNESS), *args], cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, env={**base, **(env or {})})
    STARTED.append(self.proc)

  def output(self) -> str:
    return self.log.read_text()

  def wait_for(self, text: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while text not in self.output():
      if self.proc.poll() is not None or time.monotonic() > deadline:
        self.proc.kill()
        raise AssertionError(f'{text!r} never came (exit {self.proc.poll()}):\n{self.output()}')
      time.sleep(0.05)

  def wait_paused(self, event: str, step: int) -> None:
    self.wait_for(f'TEST: paused at {event} {step}\n')

  def release(self) -> None:
    """Lets a paused run go on."""
    if self.block:
      with open(f'{self.go}.fifo', 'w') as fifo:   # the run holds it open: this does not wait
        fifo.write('g')
    else:
      self.go.write_text('go')

  def signal(self, sig: int) -> None:
    self.proc.send_signal(sig)

  def kill(self) -> None:
    self.proc.kill()
    self.proc.wait(timeout=TIMEOUT_S)

  def finish(self, timeout: float = TIMEOUT_S, returncode: int = 0) -> str:
    """Waits for the exit; returns the output and asserts the exit status."""
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      raise AssertionError(f'still running after {timeout} s:\n{self.output()}') from None
    assert self.proc.returncode == returncode, self.output()
    return self.output()


def stop_all() -> None:
  """Kills every child a test left running."""
  while STARTED:
    proc = STARTED.pop()
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=TIMEOUT_S)


# ----------------------------------------------------------------------------- what a run left


def checkpoint_steps(folder) -> list[int]:
  """The committed checkpoint steps in `folder` (a run's checkpoints/)."""
  folder = pathlib.Path(folder)
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() \
      else []


def train_losses(workdir) -> dict[int, float]:
  """step -> training loss from metrics.jsonl; a resumed run logs every step once (the steps
  after its checkpoint, trained again, replace their first records)."""
  losses = {}
  for line in (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    if 'train_loss' in record:
      assert record['step'] not in losses, f'step {record["step"]} logged twice'
      losses[record['step']] = record['train_loss']
  return losses


def state_checksums(workdir, step: int) -> dict[str, str]:
  """The sha256s of the whole train state (parameters, model RNG streams, optimizer state, step
  and augmentation RNG) saved with checkpoint `step`."""
  from micro_dualnet_jax.checkpoint import CHECKSUMS_KEY, Checkpointer  # pylint: disable=g-import-not-at-top
  checkpointer = Checkpointer(str(workdir), best_metric=None, async_save=False)
  try:
    return checkpointer.read_meta(step)[CHECKSUMS_KEY]
  finally:
    checkpointer.close()

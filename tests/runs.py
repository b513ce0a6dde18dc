"""`python main.py` as a subprocess that tests start, pause, signal and kill at exact points.

`Run` starts main.py through `tests/paused_main.py`, which installs a `train_and_evaluate` hook:
with `pause_at=('step', 6)` the run stops right after training step 6 (before its checkpoint and
its signal check), prints `TEST: paused at step 6` and waits until the test calls `release()`.
A signal or SIGKILL sent while it waits lands at that point, whatever the machine's load.
Every wait has a timeout (a hung child fails the test instead of hanging the suite) and every
child still running when the test ends is killed (the `stop_runs` fixture).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HARNESS = pathlib.Path(__file__).resolve().parent / 'paused_main.py'
TIMEOUT_S = 180   # hang protection only: nothing asserts how fast a run is
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
      ('checkpoint', 12), ('final_eval', 12); several as a list.
    hang_commit: hang forever in orbax's commit of the first checkpoint (its data is written,
      the rename of `<step>.orbax-checkpoint-tmp` to `<step>` is not), printing
      `TEST: checkpoint data written, commit pending`.
  """

  def __init__(self, args: list[str], log: pathlib.Path, *, devices: int = 2,
               env: dict[str, str] | None = None,
               pause_at: tuple[str, int] | list[tuple[str, int]] | None = None,
               hang_commit: bool = False):
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    base['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    pauses = [pause_at] if isinstance(pause_at, tuple) else list(pause_at or [])
    self.go = log.with_suffix('.go')
    base['MDN_TEST_PAUSE'] = ','.join(f'{event}:{step}' for event, step in pauses)
    base['MDN_TEST_GO'] = str(self.go)
    base['MDN_TEST_HANG_COMMIT'] = '1' if hang_commit else ''
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

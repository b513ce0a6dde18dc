"""main.py with test hooks (see tests/runs.py); arguments are main.py's.

MDN_TEST_PAUSE='step:6,checkpoint:12': at each (event, step) of `train_and_evaluate`'s hooks,
print 'TEST: paused at <event> <step>' and wait until the file MDN_TEST_GO exists (then remove
it). 'import:0' pauses before the mode's modules (and jax) are imported.
MDN_TEST_BLOCK=1: a pause blocks the main thread inside one system call (a read of the FIFO
MDN_TEST_GO.fifo) with SIGINT and SIGTERM masked in that thread, as a long XLA call or a
compilation does: Python's own signal handlers cannot run until the test releases it.
MDN_TEST_HANG_COMMIT='any' or a step: orbax's commit of every checkpoint (or of that step's, in
checkpoints/) hangs after its data is written.
"""

import functools
import os
import runpy
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from micro_dualnet_jax import cli, malloc_tuning  # noqa: E402  (neither imports jax)

malloc_tuning.reexec_with_tuned_malloc()   # as main.py does, before jax loads

_PAUSES = {tuple(item.rsplit(':', 1)) for item in os.environ.get('MDN_TEST_PAUSE', '').split(',')
           if item}
_GO = os.environ.get('MDN_TEST_GO', '')
_BLOCK = os.environ.get('MDN_TEST_BLOCK') == '1'


def _pause(event: str, step: int) -> None:
  if (event, str(step)) not in _PAUSES:
    return
  print(f'TEST: paused at {event} {step}', flush=True)
  if _BLOCK:
    masked = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, masked)
    fifo = os.open(_GO + '.fifo', os.O_RDWR)   # read-write: the read waits for data, not EOF
    try:
      os.read(fifo, 1)
    finally:
      os.close(fifo)
      signal.pthread_sigmask(signal.SIG_UNBLOCK, masked)
    return
  while not os.path.exists(_GO):
    time.sleep(0.02)
  os.remove(_GO)


def _run_with_hooks(run, *args, **kwargs):
  """cli.run, after an 'import' pause; the training loop gets the pause hook."""
  _pause('import', 0)
  from micro_dualnet_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate = functools.partial(train.train_and_evaluate, hooks=(_pause,))
  return run(*args, **kwargs)


cli.run = functools.partial(_run_with_hooks, cli.run)

_HANG = os.environ.get('MDN_TEST_HANG_COMMIT', '')
if _HANG:
  from orbax.checkpoint._src.path import atomicity  # noqa: E402

  _finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def _hang(self, *args, **kwargs):
    final = self.get_final()
    if _HANG == 'any' or (final.name == _HANG and final.parent.name == 'checkpoints'):
      print('TEST: checkpoint data written, commit pending', flush=True)
      time.sleep(600)
    return await _finalize(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = _hang

os.chdir(ROOT)
sys.argv = [os.path.join(ROOT, 'main.py'), *sys.argv[1:]]
runpy.run_path(os.path.join(ROOT, 'main.py'), run_name='__main__')

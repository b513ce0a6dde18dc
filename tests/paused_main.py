"""main.py with test hooks (see tests/runs.py); arguments are main.py's.

MDN_TEST_PAUSE='step:6,checkpoint:12': at each (event, step) of `train_and_evaluate`'s hooks,
print 'TEST: paused at <event> <step>' and wait until the file MDN_TEST_GO exists (then remove
it). MDN_TEST_HANG_COMMIT=1: orbax's commit of a checkpoint hangs after its data is written.
"""

import functools
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from micro_dualnet_jax import malloc_tuning  # noqa: E402

malloc_tuning.reexec_with_tuned_malloc()   # as main.py does, before jax loads
from micro_dualnet_jax import train  # noqa: E402

_PAUSES = {tuple(item.rsplit(':', 1)) for item in os.environ.get('MDN_TEST_PAUSE', '').split(',')
           if item}
_GO = os.environ.get('MDN_TEST_GO', '')


def _pause(event: str, step: int) -> None:
  if (event, str(step)) not in _PAUSES:
    return
  print(f'TEST: paused at {event} {step}', flush=True)
  while not os.path.exists(_GO):
    time.sleep(0.02)
  os.remove(_GO)


train.train_and_evaluate = functools.partial(train.train_and_evaluate, hooks=(_pause,))

if os.environ.get('MDN_TEST_HANG_COMMIT'):
  from orbax.checkpoint._src.path import atomicity  # noqa: E402

  async def _hang(self):
    del self
    print('TEST: checkpoint data written, commit pending', flush=True)
    time.sleep(600)

  atomicity.AtomicRenameTemporaryPath.finalize = _hang

os.chdir(ROOT)
sys.argv = [os.path.join(ROOT, 'main.py'), *sys.argv[1:]]
runpy.run_path(os.path.join(ROOT, 'main.py'), run_name='__main__')

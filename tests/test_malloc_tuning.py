"""The huge-page malloc restart (micro_dualnet_jax/malloc_tuning.py)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from micro_dualnet_jax import malloc_tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
linux_only = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc tunable')


@linux_only
def test_env_adds_the_tunable_and_keeps_others():
  env = malloc_tuning.tuned_malloc_env({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'X': '1'})
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  assert env['X'] == '1'
  assert malloc_tuning.tuned_malloc_env({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'


def test_env_leaves_user_choices_alone():
  assert malloc_tuning.tuned_malloc_env({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}) is None
  assert malloc_tuning.tuned_malloc_env({malloc_tuning.OPT_OUT_ENV: '0'}) is None


@linux_only
@pytest.mark.parametrize('opt_out', [False, True])
def test_restart_keeps_pid_and_arguments(tmp_path, opt_out):
  script = tmp_path / 'entry.py'
  script.write_text(textwrap.dedent(f"""
      import json, os, sys
      sys.path.insert(0, {ROOT!r})
      from micro_dualnet_jax import malloc_tuning
      print('before', os.getpid(), flush=True)
      malloc_tuning.reexec_with_tuned_malloc()
      print(json.dumps({{'pid': os.getpid(), 'argv': sys.argv[1:],
                        'tunables': os.environ.get('GLIBC_TUNABLES'),
                        'jax_loaded': 'jax' in sys.modules}}))
      """))
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  if opt_out:
    env[malloc_tuning.OPT_OUT_ENV] = '0'
  out = subprocess.run([sys.executable, str(script), 'a', '--b=1'], env=env, check=True,
                       capture_output=True, text=True).stdout.splitlines()
  befores = [line for line in out if line.startswith('before')]
  result = json.loads(out[-1])
  assert result['argv'] == ['a', '--b=1']
  assert not result['jax_loaded']          # importing malloc_tuning must not pull in jax
  assert all(int(line.split()[1]) == result['pid'] for line in befores)   # exec, not a child
  if opt_out:
    assert len(befores) == 1 and result['tunables'] is None
  else:
    assert len(befores) == 2 and result['tunables'] == 'glibc.malloc.hugetlb=1'

"""The test setup itself (conftest.py): the compilation cache stays under its size limit."""

import os

from conftest import trim_cache


def test_a_cache_over_its_limit_loses_its_oldest_entries_down_to_half(tmp_path):
  for age, name in enumerate(['e', 'd', 'c', 'b', 'a']):      # 'a' is the oldest
    path = tmp_path / name
    path.write_bytes(b'x' * 100)
    os.utime(path, (1000 - age, 1000 - age))
  trim_cache(tmp_path, limit=500)                              # at the limit: nothing goes
  assert sorted(os.listdir(tmp_path)) == ['a', 'b', 'c', 'd', 'e']
  trim_cache(tmp_path, limit=400)                              # over it: down to 200 bytes
  assert sorted(os.listdir(tmp_path)) == ['d', 'e']

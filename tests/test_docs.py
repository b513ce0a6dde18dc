"""Every Python code block of README.md and docs/*.md, and every script in examples/, runs.

The blocks of one file run top to bottom in one namespace, as a reader would type them; the
examples run as scripts with small sizes. Shell blocks (```bash) are not run: they train for
minutes.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
BLOCK = re.compile(r'^```python\n(.*?)^```', re.S | re.M)
# Small sizes for each example (the defaults are what a reader would run).
EXAMPLES = {'own_training_loop.py': ['--steps=20', '--train_clips=64'],
            'reuse_modules.py': ['--steps=5'], 'linen_bridge.py': ['--steps=3'],
            'predict_recording.py': [], 'clip_folder.py': ['--train_clips=8', '--test_clips=4'],
            'onnx_recording.py': []}
# Examples that need an optional extra (requirements-onnx.txt), skipped without it.
NEEDS_EXTRA = {'onnx_recording.py': ('jax2onnx', 'onnxruntime')}


def test_every_reference_points_inside_the_repository():
  outside = re.compile(r'DESIGN\.md|DATA_FORMATS\.md|shared/docs')
  for path in [*DOCS, *ROOT.glob('micro_dualnet_jax/**/*.py'), *ROOT.glob('configs/*.py'),
               *ROOT.glob('benchmarks/*.py'), *ROOT.glob('examples/*.py')]:
    text = path.read_text()
    assert not outside.search(text), f'{path} cites a file outside the repository'
  for path in DOCS:
    for target in re.findall(r'\]\(([^)#:]+\.md)\)', path.read_text()):
      assert (path.parent / target).exists(), f'{path}: broken link {target}'


@pytest.mark.parametrize('path', [
    pytest.param(p, marks=[pytest.mark.slow] if p.name == 'api.md' else [])  # api.md trains
    for p in DOCS if BLOCK.search(p.read_text())], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, monkeypatch):
  monkeypatch.chdir(ROOT)
  namespace: dict = {'__name__': f'doc_{path.stem}'}
  for i, block in enumerate(BLOCK.findall(path.read_text())):
    exec(compile(block, f'{path.name} block {i + 1}', 'exec'), namespace)  # pylint: disable=exec-used


def test_every_example_is_covered():
  assert sorted(p.name for p in (ROOT / 'examples').glob('*.py')) == sorted(EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize('script', [
    pytest.param(name, marks=pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in NEEDS_EXTRA.get(name, ())),
        reason='needs the optional onnx extra (requirements-onnx.txt)'))
    for name in sorted(EXAMPLES)])
def test_example_runs(script, tmp_path):
  env = {**os.environ, 'XLA_FLAGS': '', 'TMPDIR': str(tmp_path)}
  done = subprocess.run([sys.executable, str(ROOT / 'examples' / script), *EXAMPLES[script]],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

#!/usr/bin/env bash
# Fills .device/ (git-ignored) with what benchmarks/device.sh needs on a machine without network:
# the wheels of the packages that machine lacks (Python 3.12, manylinux x86-64), NW-UCLA
# compressed, and the PyTorch twin. Run it here, where PyPI is reachable; it stays under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="${CARRY:-.device}"
mkdir -p "$CARRY/wheels"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$CARRY/wheels" \
  ml_collections==1.1.0 tensorflow-datasets==4.9.10 array_record==0.8.6 dm-tree==0.1.10 \
  immutabledict==4.3.1 simple-parsing==0.1.9 tensorflow-metadata==1.21.0 termcolor==3.3.0 \
  toml==0.10.2 docstring_parser==0.18.0 googleapis-common-protos==1.76.0 \
  importlib_resources==7.1.0
# promise ships only as an sdist: build its wheel here. (The versions are constraints/py312.txt's;
# etils, protobuf, numpy, absl and the rest are on that machine already.)
python3 -m pip wheel -q --no-deps -w "$CARRY/wheels" promise==2.3
tar -cJf "$CARRY/nw_ucla.tar.xz" -C ../shared/datasets nw_ucla
cp ../shared/benchmarks/torch_twin.py "$CARRY/torch_twin.py"
du -sh "$CARRY"

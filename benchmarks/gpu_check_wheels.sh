#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the wheels a lent GPU machine lacks for the GPU check, into
# .whl/ in the repository root (ignored by .gitignore; the device tool's run carries it with
# carry=[".whl"]). The GPU machine's image has torch, transformers, huggingface-hub, tokenizers, safetensors, accelerate, peft, onnx, onnxruntime (CPU build), scikit-image, h5py, pluggy and numpy; it
# lacks these, all pure Python (about 7 MB together). Versions: the ones this repo's tests run with.
# Usage: bash benchmarks/gpu_check_wheels.sh
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl diffusers==0.42.1 platformdirs==4.14.9 gymnasium==1.4.0 farama-notifications==0.0.6 trimesh==5.2.0
ls -l .whl && du -sh .whl

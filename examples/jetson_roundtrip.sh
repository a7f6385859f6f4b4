#!/usr/bin/env bash
# Build a latency table for a device that is not this machine (a Jetson, a phone board, a server),
# then search against it. The device needs python3, numpy and onnxruntime (onnxruntime-gpu for
# --backend ort-cuda); no torch, no autoprune. Here the "device" is simulated by a second folder.
set -euo pipefail
work=${1:-runs/jetson-demo}
mkdir -p "$work"

# 1. Here: write the kit (micro-benchmark ONNX files, calibration models, the standalone runner).
autoprune profile --model cifar:resnet56 --backend ort-cpu --threads 1 --kit "$work/jetson-kit.zip" --validate 10

# 2. On the device (copy the zip there): unzip and run; it resumes if interrupted.
rm -rf "$work/device" && mkdir -p "$work/device"
(cd "$work/device" && python3 -c "import zipfile; zipfile.ZipFile('../jetson-kit.zip').extractall('kit')" \
  && cd kit && python3 runner.py . --out ../table.json)

# 3. Back here: the table loads as is; check it and search with it.
autoprune validate --model cifar:resnet56 --table "$work/device/table.json" --samples 10
autoprune search --budget 0.5x --table "$work/device/table.json" --trials 20 --out "$work/search"

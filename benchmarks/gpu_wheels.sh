#!/usr/bin/env bash
# Wheels of the packages this project needs that the device machines' image lacks (it has
# torch, torchvision, lightning, peft, transformers, torchmetrics, scikit-learn, matplotlib;
# not diffusers, hydra-core, omegaconf, torch-fidelity), pinned to the versions installed here,
# written to .gpu_wheels/ (ignored by git) for the device tool's `carry`. On the device:
#   python3 -m pip install -q --no-index --no-deps .gpu_wheels/*.whl && \
#   python3 -m pip install -q --no-deps -e . && bash benchmarks/gpu_check.sh
# (the machines reach no package index: everything they install travels from here).
set -euo pipefail
cd "$(dirname "$0")/.."
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .gpu_wheels && mkdir -p .gpu_wheels
pip wheel -q --no-deps -w .gpu_wheels \
  "diffusers==$(version diffusers)" "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" \
  "antlr4-python3-runtime==$(version antlr4-python3-runtime)" "torch-fidelity==$(version torch-fidelity)" \
  "safetensors==$(version safetensors)" "importlib_metadata==$(version importlib_metadata)" "zipp==$(version zipp)"
ls -la .gpu_wheels

#!/usr/bin/env bash
# Switches this environment to OpenMM's CUDA platform and the CUDA build of OpenMM-Torch that
# matches the pinned torch (2.12, CUDA 13 wheel). The CPU build installs the same openmmtorch
# module, so it is removed first; run `pip install -e .` again to go back to the CPU build.
# Needs an NVIDIA GPU and driver at run time; `gmvae-cv bias --platform CUDA` then runs the fused
# bias force on the GPU (gmvae_cv._core.platform refuses mixed or CPU-only builds with a message).
set -euo pipefail
PY=${PYTHON:-python3}
"$PY" -m pip uninstall -y acellera-openmmtorch-cpu || true
"$PY" -m pip install "openmm-cuda-13==8.5.*" "acellera-openmmtorch-cu13==1.10.*"
"$PY" -c "import openmm; print('OpenMM platforms:', [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())])"

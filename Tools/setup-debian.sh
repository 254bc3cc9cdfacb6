#!/usr/bin/env bash
# Installs the Debian packages Graft builds against (idempotent, non-interactive).
# Swift itself is expected on PATH (swift.org toolchain, 6.1 or later).
set -euo pipefail
# dataset-fashion-mnist: the real Fashion-MNIST (MIT), read by the IDX tests and pretraining.
# libhdf5-dev: ModelNet40 and ScanObjectNN's .h5 files (GraftPoints).
# libav*-dev: FFmpeg's libraries for video decoding (GraftVideo).
# libdnnl-dev: oneDNN's BF16 matmul for frozen backbones in BF16 (`backbone.precision=bf16`).
# libopenmpi-dev, openmpi-bin: Open MPI for data-parallel runs (`mpirun -np K graft tune`).
# sweethome3d-furniture: 820 real furniture meshes (CC0 / CC-BY 3.0) for `graft data prepare furniture`.
packages=(pkg-config libopenblas-dev libpng-dev libjpeg-dev zlib1g-dev libhdf5-dev dataset-fashion-mnist
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  libdnnl-dev libopenmpi-dev openmpi-bin
  sweethome3d-furniture)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install a Swift 6.1+ toolchain)" >&2; exit 1; }
echo "setup: ok ($(swift --version 2>&1 | head -1))"

#!/usr/bin/env bash
# Installs what repliq needs on a fresh Debian 12 machine (compiler, OpenBLAS,
# LAPACKE, PCRE2, cJSON) and does nothing when all of it is already there.
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev liblapacke-dev libpcre2-dev libcjson-dev liblzma-dev libssl-dev python3 python3-pip xz-utils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv); accept any working python3 with pip
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
    missing=("${missing[@]/python3-pip/}"); missing=("${missing[@]/python3/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: system packages present" >&2
# gguf (PyPI): its NumPy dequantizers wrote tests/fixtures/dequant, and its data are
# the source of the IQ lattice grids (scripts/gen_iq_tables.py); pinned so both match
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("gguf") != "0.19.0")' 2>/dev/null; then
    echo "setup: installing gguf==0.19.0 (pip, user)" >&2
    python3 -m pip install --user -q gguf==0.19.0 2>/dev/null ||
        python3 -m pip install --user -q --break-system-packages gguf==0.19.0
fi

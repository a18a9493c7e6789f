#!/usr/bin/env bash
# What building llama.cpp from source needs (crossling.llamacpp, `make llamacpp`): a C/C++ compiler,
# cmake and make, from Debian's apt repositories (ninja is used when present, not needed).
#
# Idempotent: nothing is installed, and apt is not touched, when the tools are already on PATH.
# Non-interactive: runs as root (CI, containers) or through sudo; apt never asks a question.
# Usage: scripts/install_build_tools.sh
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
{ command -v c++ >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; } || missing+=(g++ gcc)
command -v make >/dev/null 2>&1 || command -v ninja >/dev/null 2>&1 || missing+=(make)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install_build_tools: cmake, make and a C/C++ compiler already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_build_tools: apt-get not found; install these yourself: ${missing[*]}" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install_build_tools: need root or sudo for: ${missing[*]}" >&2
        exit 1
    }
    as_root=(sudo -n)  # never prompt: fail instead in a non-interactive job
fi
echo "install_build_tools: installing ${missing[*]} (apt-get)"
# `env` after sudo: sudo's env_reset would drop a DEBIAN_FRONTEND set before it
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"

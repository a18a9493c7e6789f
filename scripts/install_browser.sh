#!/usr/bin/env bash
# Install what the browser tests need, from Debian's apt repositories only (no browser download from
# anywhere else): Debian's `chromium` and the Noto fonts that draw every script crossling's UI shows
# (Latin/Cyrillic/Greek, Arabic, Devanagari, Bengali, Thai, Ethiopic, Telugu: fonts-noto-core;
# Chinese/Japanese/Korean: fonts-noto-cjk; colour emoji: fonts-noto-color-emoji).
#
# Idempotent: packages already installed are left alone and apt is not touched at all when nothing
# is missing. Usage: scripts/install_browser.sh   (root, or a user with sudo)
set -euo pipefail

PACKAGES=(chromium fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji fontconfig)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install_browser: chromium and fonts already installed ($(command -v chromium))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not found; install these packages yourself: ${missing[*]}" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install_browser: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install_browser: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# The lock keeps two engineers/CI jobs running this script at once from fighting over dpkg's lock.
exec 9>/tmp/crossling-apt.lock
flock 9
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fc-cache -f >/dev/null 2>&1 || true
echo "install_browser: done ($(chromium --version 2>/dev/null || echo 'chromium installed'))"

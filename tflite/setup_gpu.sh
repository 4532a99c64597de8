#!/usr/bin/env bash
# Install what LiteRT's GPU (WebGPU) accelerator needs on a CPU-only Debian 12 machine:
# the Vulkan loader (libvulkan1) and Mesa's software Vulkan driver lavapipe
# (mesa-vulkan-drivers) at version >= 25, which only bookworm-backports has (bookworm's
# own Mesa 22 is refused by the accelerator). Idempotent: exits at once when done already.
#
#   sudo bash tflite/setup_gpu.sh        # run as root; CI calls it before the tests
#
# Installing from backports also upgrades installed Mesa GL packages (libgl1-mesa-dri,
# libegl-mesa0, libglx-mesa0, libgbm1, libdrm*) to the same version: Mesa's libraries go
# together. The Python side (pip package ai-edge-litert) is not installed here.
set -euo pipefail

MIN_MESA_MAJOR=25
ICD_DIR=/usr/share/vulkan/icd.d  # lavapipe: lvp_icd.json (Mesa 25) or lvp_icd.<arch>.json
PACKAGES=(libvulkan1 mesa-vulkan-drivers)

installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null |
        awk '$1 == "ii" { print $2 }' || true
}

mesa_ok() {
    local v
    v=$(installed_version mesa-vulkan-drivers)
    [[ -n "$v" && -n "$(installed_version libvulkan1)" ]] || return 1
    compgen -G "$ICD_DIR/lvp_icd*.json" >/dev/null || return 1
    dpkg --compare-versions "$v" ge "$MIN_MESA_MAJOR"
}

if mesa_ok; then
    echo "setup_gpu: already installed (mesa-vulkan-drivers $(installed_version \
mesa-vulkan-drivers), libvulkan1 $(installed_version libvulkan1)); nothing to do"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "setup_gpu: must run as root (apt-get install)" >&2
    exit 2
fi
. /etc/os-release
if [[ "${VERSION_CODENAME:-}" != bookworm ]]; then
    echo "setup_gpu: written for Debian 12 (bookworm), found '${PRETTY_NAME:-unknown}'" >&2
    exit 2
fi

# apt only reads *.list and *.sources; look there for an enabled bookworm-backports entry.
shopt -s nullglob
apt_sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.{list,sources})
shopt -u nullglob
if grep -qsE '^[^#]*bookworm-backports' "${apt_sources[@]}"; then
    echo "setup_gpu: bookworm-backports already in the apt sources"
else
    # Reuse the Debian mirror the machine already uses (deb822 URIs: or one-line deb entries).
    mirror=$(grep -hsE '^\s*(URIs:|deb\s)' "${apt_sources[@]}" | tr -s ' \t' '\n' |
        grep -E '^https?://.+/debian/?$' | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb ${mirror%/} bookworm-backports main" \
        >/etc/apt/sources.list.d/bookworm-backports.list
    echo "setup_gpu: added /etc/apt/sources.list.d/bookworm-backports.list (${mirror%/})"
fi

echo "setup_gpu: apt-get update"
apt-get update -qq
echo "setup_gpu: installing ${PACKAGES[*]} from bookworm-backports"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports "${PACKAGES[@]}" >/dev/null

if ! mesa_ok; then
    echo "setup_gpu: mesa-vulkan-drivers '$(installed_version mesa-vulkan-drivers)' is not" \
        ">= $MIN_MESA_MAJOR or $ICD_DIR/lvp_icd*.json is missing" >&2
    exit 1
fi
echo "setup_gpu: installed mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers)," \
    "libvulkan1 $(installed_version libvulkan1)"

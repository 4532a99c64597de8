#!/usr/bin/env bash
# Build what runs our .tflite files on XNNPACK's ARM kernels under emulation, from nothing:
#   - Debian's qemu-user (the dynamic qemu-aarch64, which loads TCG plugins) and mmdebstrap;
#   - an arm64 Debian 12 tree holding Python 3.11 (mmdebstrap's `extract` variant: packages
#     unpacked, no maintainer scripts, so no emulation is needed to build it);
#   - the aarch64 wheels of the locked ai-edge-litert and numpy in that tree (/opt/site);
#   - insn_count.c built as a plugin against qemu-plugin.h of the installed qemu's source.
# The result lands in $LSNET_ARM_HOME (default ~/.cache/lsnet-keras/arm), written atomically,
# and is rebuilt only when this script, the plugin, the lock or qemu changes (its `stamp`).
# The core prefixes (/proc/cpuinfo per emulated core) are made by tflite/arm.py.
#
#   bash tflite/arm/setup.sh      # root the first time (apt-get); prints the folder
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lock="$here/../../requirements/lock.txt"
home=${LSNET_ARM_HOME:-$HOME/.cache/lsnet-keras/arm}
PACKAGES=(qemu-user mmdebstrap)
GUEST_PACKAGES=python3.11,libstdc++6
WHEEL_PLATFORMS=(manylinux_2_27_aarch64 manylinux_2_28_aarch64 manylinux2014_aarch64)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "arm setup: needs ${missing[*]}: run it as root once (apt-get install)" >&2
        exit 2
    fi
    apt-get install -y -q "${missing[@]}" >/dev/null
fi

qemu_version=$(dpkg-query -W -f='${Version}' qemu-user)
locked() { grep -E "^$1==" "$lock" | head -n1; }
litert=$(locked ai-edge-litert)
numpy=$(locked numpy)
stamp=$(cat "$0" "$here/insn_count.c" | sha256sum | cut -c1-16)
stamp="$stamp $qemu_version $litert $numpy"
if [[ -f "$home/stamp" && "$(cat "$home/stamp")" == "$stamp" ]]; then
    echo "$home"
    exit 0
fi

mkdir -p "$(dirname "$home")"
work=$(mktemp -d "$home.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "arm setup: arm64 tree ($GUEST_PACKAGES)" >&2
mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$GUEST_PACKAGES" \
    bookworm "$work/tree" http://deb.debian.org/debian
mkdir -p "$work/tree/opt"
echo "arm setup: aarch64 wheels ($litert, $numpy)" >&2
platforms=()
for platform in "${WHEEL_PLATFORMS[@]}"; do platforms+=(--platform "$platform"); done
python3 -m pip install -q --target "$work/tree/opt/site" "${platforms[@]}" \
    --python-version 3.11 --implementation cp --only-binary=:all: -c "$lock" \
    "$litert" "$numpy"

# The plugin API header of the installed qemu: its upstream source, from Debian's pool.
upstream=${qemu_version#*:}
upstream=${upstream%-*}
echo "arm setup: counting plugin (qemu-plugin.h of qemu $upstream)" >&2
curl -sSf -o "$work/qemu.tar.xz" \
    "http://deb.debian.org/debian/pool/main/q/qemu/qemu_${upstream}.orig.tar.xz"
tar -xf "$work/qemu.tar.xz" -C "$work" --wildcards '*/include/qemu/qemu-plugin.h'
header_dir=$(dirname "$(find "$work" -name qemu-plugin.h | head -n1)")
gcc -O2 -Wall -shared -fPIC -I"$header_dir" -o "$work/libinsn_count.so" "$here/insn_count.c"
rm -rf "$work/qemu.tar.xz" "$work"/qemu-*/

echo "$stamp" >"$work/stamp"
rm -rf "$home.old"
if [[ -e "$home" ]]; then mv "$home" "$home.old"; fi
mv "$work" "$home"
rm -rf "$home.old"
trap - EXIT
echo "$home"

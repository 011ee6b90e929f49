#!/usr/bin/env bash
# Installs what the Cortex-M firmware run needs, on a fresh machine, without
# touching the system's packages: the thumbv7em-none-eabihf target, and
# Debian's qemu-system-arm and binutils-arm-none-eabi unpacked (not
# installed) into .tools/ (see ../shared/notes/embedded.md: installing
# qemu-system-arm would remove the machine's newer qemu-utils).
# Prints the environment to use: `eval "$(scripts/embedded-tools.sh)"`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.tools/embedded"

if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    rustup target add thumbv7em-none-eabihf >&2
fi

if [ ! -x "$root/usr/bin/qemu-system-arm" ] || [ ! -x "$root/usr/bin/arm-none-eabi-size" ]; then
    mkdir -p "$root/debs"
    (
        cd "$root/debs"
        if ! apt-get download qemu-system-arm >/dev/null 2>&1; then
            apt-get update >&2
        fi
        apt-get download qemu-system-arm libfdt1 libcapstone4 libpmem1 librdmacm1 \
            libibverbs1 libslirp0 libvdeplug2 libndctl6 libdaxctl1 libnl-3-200 \
            libnl-route-3-200 binutils-arm-none-eabi >&2
        for deb in *.deb; do
            dpkg-deb -x "$deb" "$root"
        done
    )
fi

libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
# Check both tools start (a missing library shows here, loudly).
LD_LIBRARY_PATH="$libs" "$root/usr/bin/qemu-system-arm" --version | head -n 1 >&2
"$root/usr/bin/arm-none-eabi-size" --version | head -n 1 >&2
echo "export PATH=\"$root/usr/bin:\$PATH\""
echo "export QEMU_LD_LIBRARY_PATH=\"$libs\""

#!/usr/bin/env bash
# Builds the Cortex-M4 firmware (gossip-embedded/firmware), prints its sizes
# and runs it on QEMU's mps2-an386; exits non-zero if the build, the size
# check or the run fails (the firmware exits 1 through semihosting on
# failure or panic). Installs what it needs (scripts/embedded-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/embedded-tools.sh)"
elf=gossip-embedded/firmware/target/thumbv7em-none-eabihf/release/gossip-firmware
(cd gossip-embedded/firmware && cargo build --release --locked)

echo "--- sizes (bytes)"
arm-none-eabi-size -A "$elf" | grep -E '^\.(vector_table|text|rodata|data|bss) '
text=$(arm-none-eabi-size -A "$elf" | awk '$1 == ".text" { print $2 }')
echo "flash .text = $text bytes (target: under 65536)"
if [ "$text" -ge 65536 ]; then
    echo "FIRMWARE .text IS OVER 64 KiB"
    exit 1
fi

echo "--- QEMU mps2-an386"
LD_LIBRARY_PATH="$QEMU_LD_LIBRARY_PATH" timeout 120 qemu-system-arm \
    -cpu cortex-m4 -machine mps2-an386 -nographic \
    -semihosting-config enable=on,target=native \
    -kernel "$elf"
echo "--- firmware exited 0"

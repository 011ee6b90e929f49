#!/usr/bin/env bash
# Builds the Cortex-M4 firmware (gossip-embedded/firmware), prints its sizes
# and runs it on QEMU's mps2-an386:
#   - `two-nodes`: two nodes inside one firmware, on an in-memory switch;
#   - `node`: one node per firmware on the board's LAN9118 Ethernet
#     controller, two QEMU instances joined by QEMU's socket network on
#     127.0.0.1 (MAC ...:01 is node 0, the seed; ...:02 is node 1).
# Exits non-zero if a build, the flash check (.text under 64 KiB) or a run
# fails; the firmware exits 1 through semihosting on failure or panic, and
# `node` also when its RAM use (.data + .bss + stack peak) reaches 32 KiB.
# Installs what it needs (scripts/embedded-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/embedded-tools.sh)"
bin=gossip-embedded/firmware/target/thumbv7em-none-eabihf/release
(cd gossip-embedded/firmware && cargo build --release --locked)

for elf in two-nodes node; do
    echo "--- $elf: sizes (bytes)"
    arm-none-eabi-size -A "$bin/$elf" | grep -E '^\.(vector_table|text|rodata|data|bss) '
    text=$(arm-none-eabi-size -A "$bin/$elf" | awk '$1 == ".text" { print $2 }')
    echo "$elf: flash .text = $text bytes (target: under 65536)"
    if [ "$text" -ge 65536 ]; then
        echo "FIRMWARE $elf: .text IS OVER 64 KiB"
        exit 1
    fi
done

qemu() {
    LD_LIBRARY_PATH="$QEMU_LD_LIBRARY_PATH" timeout 120 qemu-system-arm \
        -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native "$@"
}

echo "--- QEMU mps2-an386: two-nodes"
qemu -kernel "$bin/two-nodes"
echo "--- two-nodes exited 0"

echo "--- QEMU mps2-an386: node x 2, LAN9118 over QEMU's socket network"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for attempt in 1 2 3; do
    port=$((20000 + RANDOM % 20000))
    qemu -kernel "$bin/node" -nic "socket,listen=127.0.0.1:$port,mac=52:54:00:00:00:01" \
        >"$logs/node0" 2>&1 &
    first=$!
    sleep 1
    qemu -kernel "$bin/node" -nic "socket,connect=127.0.0.1:$port,mac=52:54:00:00:00:02" \
        >"$logs/node1" 2>&1 &
    second=$!
    rc0=0 rc1=0
    wait "$first" || rc0=$?
    wait "$second" || rc1=$?
    if [ "$rc0" -ne 0 ] && grep -q "Address already in use" "$logs/node0"; then
        echo "port $port is taken; trying another (attempt $attempt)"
        continue
    fi
    break
done
cat "$logs/node0" "$logs/node1"
if [ "$rc0" -ne 0 ] || [ "$rc1" -ne 0 ]; then
    echo "FIRMWARE node FAILED: node 0 exited $rc0, node 1 exited $rc1"
    exit 1
fi
echo "--- both nodes exited 0"

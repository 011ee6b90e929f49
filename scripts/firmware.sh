#!/usr/bin/env bash
# Builds the Cortex-M4 firmware (gossip-embedded/firmware), prints its sizes
# and runs it on QEMU's mps2-an386:
#   - `two-nodes`: two nodes inside one firmware, on an in-memory switch;
#   - `node`: one node per firmware on the board's LAN9118 Ethernet
#     controller, two QEMU instances joined by QEMU's socket network on
#     127.0.0.1 (MAC ...:01 is node 0, the seed; ...:02 is node 1);
#   - `embassy-node`: the same on embassy (executor, embassy-net on the
#     LAN9118's embassy-net driver, embassy-time), two instances as `node`,
#     then three on one multicast segment: node 2's QEMU is killed, nodes 0
#     and 1 report it down over semihosting, it boots again with the next
#     generation and both report it restarted and up.
# Exits non-zero if a build, a flash check (.text under 64 KiB for `node`
# and `two-nodes`, under 96 KiB for `embassy-node`) or a run fails; the
# firmware exits 1 through semihosting on failure or panic, and the
# one-node-per-board firmware also when its RAM use (.data + .bss + stack
# peak) reaches 32 KiB.
# Installs what it needs (scripts/embedded-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/embedded-tools.sh)"
bin=gossip-embedded/firmware/target/thumbv7em-none-eabihf/release
(cd gossip-embedded/firmware && cargo build --release --locked)

for elf in two-nodes:65536 node:65536 embassy-node:98304; do
    limit=${elf#*:}
    elf=${elf%:*}
    echo "--- $elf: sizes (bytes)"
    arm-none-eabi-size -A "$bin/$elf" | grep -E '^\.(vector_table|text|rodata|data|bss) '
    text=$(arm-none-eabi-size -A "$bin/$elf" | awk '$1 == ".text" { print $2 }')
    echo "$elf: flash .text = $text bytes (target: under $limit)"
    if [ "$text" -ge "$limit" ]; then
        echo "FIRMWARE $elf: .text IS OVER $((limit / 1024)) KiB"
        exit 1
    fi
done

machine="-cpu cortex-m4 -machine mps2-an386 -nographic -semihosting-config enable=on,target=native"
qemu() {
    # shellcheck disable=SC2086 # the machine's options, split on purpose
    LD_LIBRARY_PATH="$QEMU_LD_LIBRARY_PATH" timeout 120 qemu-system-arm $machine "$@"
}
# The same in the background; `$!` is then the PID of `timeout`, whose
# child is QEMU (see `kill_run`).
qemu_bg() {
    # shellcheck disable=SC2086 # the machine's options, split on purpose
    (exec env LD_LIBRARY_PATH="$QEMU_LD_LIBRARY_PATH" timeout 120 qemu-system-arm $machine "$@") &
    pids+=("$!")
}

echo "--- QEMU mps2-an386: two-nodes"
qemu -kernel "$bin/two-nodes"
echo "--- two-nodes exited 0"

echo "--- QEMU mps2-an386: node x 2, LAN9118 over QEMU's socket network"
logs=$(mktemp -d)
pids=()
# Kills a `timeout` started below and the QEMU it runs.
kill_run() {
    local children
    children=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
    # shellcheck disable=SC2086 # a list of PIDs
    kill -9 $children "$1" 2>/dev/null || true
}
cleanup() {
    for pid in "${pids[@]}"; do
        kill_run "$pid"
    done
    rm -rf "$logs"
}
trap cleanup EXIT
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

# One Ethernet segment for several QEMU instances: a multicast group on
# the loopback interface (QEMU's socket network, mcast mode).
segment() {
    echo "socket,mcast=230.0.0.1:$1,localaddr=127.0.0.1,mac=52:54:00:00:00:0$2"
}

# Waits up to $3 seconds for a line matching $2 in file $1.
wait_for() {
    local tries=$(($3 * 10))
    while [ "$tries" -gt 0 ]; do
        if grep -q "$2" "$1"; then
            return 0
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

echo "--- QEMU mps2-an386: embassy-node x 2 (mode=pair), LAN9118 on a multicast segment"
port=$((20000 + RANDOM % 20000))
qemu_bg -kernel "$bin/embassy-node" -append "mode=pair boot=1" -nic "$(segment "$port" 1)" \
    >"$logs/pair0" 2>&1
first=$!
qemu_bg -kernel "$bin/embassy-node" -append "mode=pair boot=1" -nic "$(segment "$port" 2)" \
    >"$logs/pair1" 2>&1
second=$!
rc0=0 rc1=0
wait "$first" || rc0=$?
wait "$second" || rc1=$?
cat "$logs/pair0" "$logs/pair1"
if [ "$rc0" -ne 0 ] || [ "$rc1" -ne 0 ]; then
    echo "FIRMWARE embassy-node FAILED: node 0 exited $rc0, node 1 exited $rc1"
    exit 1
fi
echo "--- both nodes exited 0"

echo "--- QEMU mps2-an386: embassy-node x 3 (mode=crash): node 2 is killed, then boots again"
port=$((20000 + RANDOM % 20000))
board() { # board number (MAC :01..:03), boot count, log file
    qemu_bg -kernel "$bin/embassy-node" -append "mode=crash boot=$2" \
        -nic "$(segment "$port" "$1")" >"$3" 2>&1
}
crash_failed() {
    for f in crash0 crash1 crash2-boot1 crash2-boot2; do
        [ -f "$logs/$f" ] && { echo "--- $f"; cat "$logs/$f"; }
    done
    echo "FIRMWARE embassy-node crash FAILED: $1"
    exit 1
}
board 1 1 "$logs/crash0"
observer0=$!
board 2 1 "$logs/crash1"
observer1=$!
board 3 1 "$logs/crash2-boot1"
victim=$!
for i in 0 1; do
    wait_for "$logs/crash$i" "node$i: node2 up" 30 || crash_failed "node $i never saw node 2 up"
done
kill_run "$victim"
killed=$(date +%s%N)
echo "node 2's QEMU killed (kill -9)"
for i in 0 1; do
    wait_for "$logs/crash$i" "node$i: node2 down" 30 || crash_failed "node $i never saw node 2 down"
    echo "node $i reported node 2 down $(( ($(date +%s%N) - killed) / 1000000 )) ms after the kill (polled every 100 ms)"
done
board 3 2 "$logs/crash2-boot2"
victim=$!
rc0=0 rc1=0 rc2=0
wait "$observer0" || rc0=$?
wait "$observer1" || rc1=$?
wait "$victim" || rc2=$?
for f in crash0 crash1 crash2-boot1 crash2-boot2; do
    echo "--- $f"
    cat "$logs/$f"
done
if [ "$rc0" -ne 0 ] || [ "$rc1" -ne 0 ] || [ "$rc2" -ne 0 ]; then
    crash_failed "node 0 exited $rc0, node 1 exited $rc1, node 2 (second boot) exited $rc2"
fi
echo "--- nodes 0 and 1 saw node 2 crash and come back with generation 2; all exited 0"

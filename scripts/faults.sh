#!/usr/bin/env bash
# Real `gossip agent` processes under faults: packet loss, partitions, one-way
# cuts, kill -9, SIGSTOP/SIGCONT and key rotation, in a network namespace of
# their own (its loopback holds 127.0.0.0/8; nftables rules in it drop real
# datagrams). Prints the harness's JSON summary on stdout.
#
#   bash scripts/faults.sh                         # every scenario, 10 agents
#   bash scripts/faults.sh --agents 50             # the same at 50 agents
#   bash scripts/faults.sh --scenario kill5 --scenario pause
#   bash scripts/faults.sh --debug ...             # debug binaries (as CI)
#
# Every other argument goes to the harness (`--help` lists them). Needs root
# (network namespaces, nftables); installs nftables from Debian's packages
# when `nft` is missing, and fails loudly when it cannot. The namespace and
# every process in it are removed on any exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for a in "$@"; do
    case "$a" in
        --debug) profile=debug ;;
        *) args+=("$a") ;;
    esac
done

fail() {
    echo "FAULTS: CANNOT RUN: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root for network namespaces and nftables (uid $(id -u))"
command -v ip >/dev/null || fail "ip (iproute2) is missing"
if ! command -v nft >/dev/null; then
    echo "faults: installing nftables" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q nftables >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q nftables >&2; } ||
        fail "nftables is missing and could not be installed"
fi

if [ "$profile" = release ]; then
    cargo build -q --release -p gossip-cli --bin gossip -p gossip-bench --bin faults >&2
else
    cargo build -q -p gossip-cli --bin gossip -p gossip-bench --bin faults >&2
fi

ns="gossip-faults-$$"
cleanup() {
    local pids
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086 # one PID a word
        kill -CONT $pids 2>/dev/null || true
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns" || fail "cannot create a network namespace (ip netns add)"
ip -n "$ns" link set lo up
ip netns exec "$ns" nft list tables >/dev/null || fail "nftables does not work in the namespace"

ip netns exec "$ns" "target/$profile/faults" --gossip "target/$profile/gossip" --netns "$ns" ${args[@]+"${args[@]}"}

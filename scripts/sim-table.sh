#!/usr/bin/env bash
# Prints the README's simulator table: every scenario at the node counts
# given (default 100 and 1000), seed 1, 1 s rounds, fanout 1; crash with 5%
# loss. Usage: scripts/sim-table.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gossip-cli
sizes=("${@:-100 1000}")
header=1
for n in ${sizes[*]}; do
    for s in converge disseminate crash restart partition churn; do
        loss=0
        [ "$s" = crash ] && loss=0.05
        out=$(./target/release/gossip sim --scenario "$s" --nodes "$n" --loss "$loss" --markdown || true)
        if [ $header = 1 ]; then
            echo "$out" | head -2
            header=0
        fi
        echo "$out" | tail -1
    done
done

#!/usr/bin/env bash
# Prints the simulator table of docs/simulation.md: every scenario at the node counts
# given (default 100 and 1000), seed 1, 1 s rounds, fanout 1; crash with 5%
# loss, and again with 10% loss and 200 ms of jitter. Above 3,000 nodes only
# converge, join and crash run (the others take hours there). Usage:
# scripts/sim-table.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gossip-cli
sizes=("${@:-100 1000}")
header=1
for n in ${sizes[*]}; do
    scenarios=(converge join disseminate crash crash-jitter restart pause partition churn)
    if [ "$n" -gt 3000 ]; then
        scenarios=(converge join crash)
    fi
    for s in "${scenarios[@]}"; do
        args=(--scenario "$s" --nodes "$n")
        case $s in
            crash) args+=(--loss 0.05) ;;
            crash-jitter) args=(--scenario crash --nodes "$n" --loss 0.1 --jitter-ms 200) ;;
        esac
        out=$(./target/release/gossip sim "${args[@]}" --markdown || true)
        if [ $header = 1 ]; then
            echo "$out" | head -2
            header=0
        fi
        echo "$out" | tail -1
    done
done

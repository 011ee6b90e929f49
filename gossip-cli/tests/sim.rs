//! The `gossip sim` command, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::process::Command;

fn gossip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gossip"))
        .args(args)
        .output()
        .expect("the gossip binary runs")
}

#[test]
fn json_has_every_key_and_reports_convergence() {
    let out = gossip(&[
        "sim",
        "--scenario",
        "converge",
        "--nodes",
        "20",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "scenario",
        "nodes",
        "seed",
        "loss",
        "interval_ms",
        "converged",
        "rounds",
        "sim_time_ms",
        "disseminate_ms",
        "detect_ms_p50",
        "detect_ms_max",
        "restart_ms",
        "heal_ms",
        "false_downs",
        "datagrams_per_node_per_s",
        "bytes_per_node_per_s",
        "max_datagram_bytes",
        "bytes_per_known_peer",
        "wall_ms",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["scenario"], "converge");
    assert_eq!(v["nodes"], 20);
    assert_eq!(v["seed"], 3);
    assert_eq!(v["converged"], true);
    assert!(v["disseminate_ms"].is_null());
    assert!(v["bytes_per_known_peer"].as_f64().unwrap() > 0.0);
    assert!(v["max_datagram_bytes"].as_u64().unwrap() <= 1400);
}

#[test]
fn crash_reports_detection_times() {
    let out = gossip(&[
        "sim",
        "--scenario",
        "crash",
        "--nodes",
        "12",
        "--json",
        "--interval-ms",
        "200",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p50 = v["detect_ms_p50"].as_u64().unwrap();
    let max = v["detect_ms_max"].as_u64().unwrap();
    assert!(p50 > 0 && p50 <= max);
    assert_eq!(v["interval_ms"], 200);
}

#[test]
fn human_summary_and_plot() {
    let dir = std::env::temp_dir().join(format!("gossip-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("converge.svg");
    let out = gossip(&[
        "sim",
        "--scenario",
        "converge",
        "--nodes",
        "10",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("goal reached        yes"), "{text}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("polyline"),
        "{plot}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_thread_or_three_give_the_same_figures() {
    let run = |threads: &str| {
        let out = gossip(&[
            "sim",
            "--scenario",
            "crash",
            "--nodes",
            "40",
            "--loss",
            "0.05",
            "--interval-ms",
            "200",
            "--threads",
            threads,
            "--json",
        ]);
        assert!(out.status.success(), "{out:?}");
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Wall time and the heap measure (allocator bookkeeping per thread)
        // may differ; everything the protocol did may not.
        v["wall_ms"] = serde_json::Value::Null;
        v["bytes_per_known_peer"] = serde_json::Value::Null;
        v
    };
    let one = run("1");
    assert_eq!(one["converged"], true, "{one}");
    assert_eq!(one, run("3"));
}

#[test]
fn bad_arguments_get_a_clear_message_and_a_failure() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["sim", "--scenario", "explode", "--nodes", "5"],
            "unknown scenario",
        ),
        (&["sim", "--scenario", "converge", "--nodes", "1"], "nodes"),
        (&["sim", "--scenario", "converge", "--nodes", "x"], "nodes"),
        (
            &[
                "sim",
                "--scenario",
                "converge",
                "--nodes",
                "5",
                "--loss",
                "2",
            ],
            "loss",
        ),
        (
            &[
                "sim",
                "--scenario",
                "converge",
                "--nodes",
                "5",
                "--fanout",
                "9",
            ],
            "fanout",
        ),
        (
            &["sim", "--scenario", "partition", "--nodes", "3"],
            "at least 4",
        ),
        (
            &[
                "sim",
                "--scenario",
                "converge",
                "--nodes",
                "5",
                "--threads",
                "0",
            ],
            "threads",
        ),
    ];
    for (args, needle) in cases {
        let out = gossip(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // An unwritable plot path is an error too.
    let out = gossip(&[
        "sim",
        "--scenario",
        "converge",
        "--nodes",
        "4",
        "--plot",
        "/nonexistent/dir/x.svg",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
}

#[test]
fn demo_runs_every_step() {
    let out = gossip(&["demo", "--nodes", "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "converged",
        "every live node marked it down",
        "every node sees it up again",
        "every node sees it shut down",
        "demo complete",
    ] {
        assert!(text.contains(step), "missing '{step}' in:\n{text}");
    }
    let out = gossip(&["demo", "--nodes", "1"]);
    assert!(!out.status.success());
}

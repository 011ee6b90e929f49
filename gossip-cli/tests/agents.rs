//! Five `gossip agent` processes on 127.0.0.x: converge, SIGKILL one, restart
//! it, SIGTERM another. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

mod common;
use common::{Agents, agent_command, cluster_at, view_at, wait};

const N: usize = 5;

fn gossip_addr(i: usize) -> String {
    format!("127.0.0.{}:7946", 21 + i)
}

fn admin_addr(i: usize) -> String {
    format!("127.0.0.{}:7947", 21 + i)
}

fn spawn_agent(i: usize, dir: &Path) -> Child {
    let seed = gossip_addr(0);
    agent_command(
        &gossip_addr(i),
        &admin_addr(i),
        "agents-test",
        (i > 0).then_some(seed.as_str()),
    )
    .arg("--state")
    .arg(format!("RACK=r{i}"))
    .arg("--data-dir")
    .arg(dir.join(format!("agent-{i}")))
    .spawn()
    .expect("the gossip binary starts")
}

/// `/cluster` of agent `i`, if it answers.
fn cluster(i: usize) -> Option<serde_json::Value> {
    cluster_at(&admin_addr(i))
}

fn view(i: usize, of: usize) -> Option<serde_json::Value> {
    view_at(&admin_addr(i), &gossip_addr(of))
}

#[test]
fn five_agents_converge_and_see_kill_restart_and_shutdown() {
    let dir = std::env::temp_dir().join(format!("gossip-agents-{}", std::process::id()));
    let mut agents = Agents((0..N).map(|i| Some(spawn_agent(i, &dir))).collect());
    let live =
        |except: &[usize]| -> Vec<usize> { (0..N).filter(|i| !except.contains(i)).collect() };

    wait("5 alive everywhere", Duration::from_secs(30), || {
        (0..N).all(|i| {
            cluster(i).is_some_and(|c| {
                c["endpoints"]
                    .as_array()
                    .is_some_and(|e| e.len() == N - 1 && e.iter().all(|x| x["alive"] == true))
            })
        })
    });
    let rack = view(1, 3).unwrap()["states"]["RACK"]["value"].clone();
    assert_eq!(rack, "r3");

    // SIGKILL agent 4: the others mark it down.
    let killed = 4;
    let old_generation = view(0, killed).unwrap()["generation"].as_u64().unwrap();
    let mut child = agents.0[killed].take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait(
        "the killed agent marked down",
        Duration::from_secs(30),
        || {
            live(&[killed])
                .iter()
                .all(|&i| view(i, killed).is_some_and(|v| v["alive"] == false))
        },
    );

    // Restart it: a higher generation, up again everywhere.
    agents.0[killed] = Some(spawn_agent(killed, &dir));
    wait(
        "the restarted agent up with a new generation",
        Duration::from_secs(30),
        || {
            live(&[killed]).iter().all(|&i| {
                view(i, killed).is_some_and(|v| {
                    v["alive"] == true && v["generation"].as_u64().unwrap() > old_generation
                })
            })
        },
    );

    // SIGTERM agent 2: it leaves gracefully, the others see it at once.
    let leaving = 2;
    let pid = agents.0[leaving].as_ref().unwrap().id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = agents.0[leaving].as_mut().unwrap().wait().unwrap();
    assert!(exit.success(), "a SIGTERMed agent exits cleanly");
    agents.0[leaving] = None;
    let took = wait("the shutdown seen", Duration::from_secs(5), || {
        live(&[leaving]).iter().all(|&i| {
            view(i, leaving).is_some_and(|v| {
                v["alive"] == false
                    && v["states"]["STATUS"]["value"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("shutdown"))
            })
        })
    });
    // "At once": well before a failure detector could have convicted it.
    assert!(took < Duration::from_secs(2), "{took:?}");

    // gossip info speaks the gossipinfo layout.
    let out = Command::new(env!("CARGO_BIN_EXE_gossip"))
        .args(["info", "--admin", &admin_addr(0)])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("/{}\n  generation:", gossip_addr(leaving))),
        "{text}"
    );
    assert!(text.contains("STATUS:"), "{text}");
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agent_errors_are_clear() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gossip"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["agent", "--listen", "nonsense"]);
    assert!(!ok && err.contains("--listen"), "{err}");
    let (ok, err) = run(&["agent", "--listen", "127.0.0.31:7946", "--state", "novalue"]);
    assert!(!ok && err.contains("KEY=VALUE"), "{err}");
    let (ok, err) = run(&[
        "agent",
        "--listen",
        "127.0.0.31:7946",
        "--seed",
        "no.such.host.invalid:7000",
    ]);
    assert!(!ok && err.contains("cannot resolve seed"), "{err}");
    // A port in use.
    let busy = std::net::UdpSocket::bind("127.0.0.31:7950").unwrap();
    let (ok, err) = run(&[
        "agent",
        "--listen",
        &busy.local_addr().unwrap().to_string(),
        "--admin",
        "127.0.0.31:0",
    ]);
    assert!(!ok && err.contains("cannot bind"), "{err}");
    // Every interface bound, and no address to be known by.
    let (ok, err) = run(&["agent", "--listen", "0.0.0.0:0", "--admin", "127.0.0.31:0"]);
    assert!(
        !ok && err.contains("cannot gossip as 0.0.0.0:") && err.contains("advertise"),
        "{err}"
    );
    let (ok, err) = run(&["info", "--admin", "127.0.0.31:9"]);
    assert!(!ok && err.contains("cannot reach"), "{err}");
}

#[test]
fn an_agent_on_every_interface_is_known_by_its_advertised_address() {
    let mut agents = Agents(Vec::new());
    let mut a = agent_command("0.0.0.0:7981", "127.0.0.71:7982", "advertise", None);
    a.args(["--advertise", "127.0.0.71:7981"]);
    agents.0.push(Some(a.spawn().unwrap()));
    let mut b = agent_command(
        "127.0.0.72:7983",
        "127.0.0.72:7984",
        "advertise",
        Some("127.0.0.71:7981"),
    );
    agents.0.push(Some(b.spawn().unwrap()));
    wait(
        "each sees the other alive, A by its advertised address",
        Duration::from_secs(20),
        || {
            view_at("127.0.0.72:7984", "127.0.0.71:7981").is_some_and(|e| e["alive"] == true)
                && view_at("127.0.0.71:7982", "127.0.0.72:7983").is_some_and(|e| e["alive"] == true)
        },
    );
    let local = cluster_at("127.0.0.71:7982").unwrap()["local"]["address"].clone();
    assert_eq!(local, "127.0.0.71:7981");
}

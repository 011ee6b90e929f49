//! Helpers shared by the agent tests: admin requests, bounded waits, and a
//! guard that kills agent processes when a test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test helpers

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `METHOD path` on the admin endpoint at `admin`: the status line (`200
/// OK`, ...) and the body, if it answers.
pub(crate) fn admin(admin: &str, method: &str, path: &str) -> Option<(String, String)> {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{admin}{path}");
    let mut response = match method {
        "POST" => http.post(&url).send_empty().ok()?,
        _ => http.get(&url).call().ok()?,
    };
    let status = response.status();
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let body = response.body_mut().read_to_string().ok()?;
    Some((line, body))
}

/// `/cluster` of the agent at `admin`, if it answers.
pub(crate) fn cluster_at(admin_addr: &str) -> Option<serde_json::Value> {
    let (_, json) = admin(admin_addr, "GET", "/cluster")?;
    serde_json::from_str(&json).ok()
}

/// What the agent at `admin` knows of the endpoint `of`.
pub(crate) fn view_at(admin_addr: &str, of: &str) -> Option<serde_json::Value> {
    let c = cluster_at(admin_addr)?;
    c["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == of)
        .cloned()
}

/// Polls `f` every 50 ms for at most `limit`; how long it took.
pub(crate) fn wait(what: &str, limit: Duration, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within {limit:?}");
}

/// Agent processes, killed when dropped.
pub(crate) struct Agents(pub(crate) Vec<Option<Child>>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `gossip agent` on `listen` with its admin endpoint on `admin`, 100 ms
/// rounds, in `cluster`, joining through `seed`; output discarded. Add
/// options, then spawn.
pub(crate) fn agent_command(
    listen: &str,
    admin: &str,
    cluster: &str,
    seed: Option<&str>,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gossip"));
    cmd.args([
        "agent",
        "--listen",
        listen,
        "--admin",
        admin,
        "--interval-ms",
        "100",
        "--cluster",
        cluster,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(seed) = seed {
        cmd.args(["--seed", seed]);
    }
    cmd
}

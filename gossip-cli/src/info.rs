//! `gossip info`: asks an agent's admin endpoint for its view, once or
//! refreshed in place.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::agent::resolve;

/// What `gossip info` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// `nodetool gossipinfo`'s layout (`/gossipinfo`).
    GossipInfo,
    /// One line a member, as `nodetool status` (`/status`).
    Status,
    /// The `/cluster` JSON.
    Json,
}

impl View {
    fn path(self) -> &'static str {
        match self {
            View::GossipInfo => "/gossipinfo",
            View::Status => "/status",
            View::Json => "/cluster",
        }
    }
}

/// GETs `view` from the agent at `admin` (host:port).
pub(crate) fn fetch(admin: &str, view: View) -> Result<String> {
    let addr = resolve("admin endpoint", admin)?;
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}{}", view.path());
    let mut response = http
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach the agent at {addr}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading from {addr}"))?;
    if !status.is_success() {
        bail!("{addr} answered {status}: {}", body.trim());
    }
    Ok(body)
}

/// Prints `view` once, or every `watch` (clearing the terminal first, as
/// `watch(1)` does) until interrupted. A reader that stops reading (`|
/// head`) ends it quietly.
pub(crate) fn run(admin: &str, view: View, watch: Option<Duration>) -> Result<()> {
    match print(admin, view, watch) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn print(admin: &str, view: View, watch: Option<Duration>) -> Result<()> {
    let Some(every) = watch else {
        let body = fetch(admin, view)?;
        let mut out = std::io::stdout().lock();
        out.write_all(body.as_bytes())?;
        if view == View::Json {
            writeln!(out)?;
        }
        out.flush()?;
        return Ok(());
    };
    loop {
        // A failed refresh is shown in place, and tried again.
        let body = fetch(admin, view).unwrap_or_else(|e| format!("{e:#}\n"));
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "\x1b[2J\x1b[H{admin}, every {:.1} s (Ctrl-C to stop)\n\n{body}",
            every.as_secs_f64()
        )?;
        out.flush()?;
        drop(out);
        std::thread::sleep(every);
    }
}

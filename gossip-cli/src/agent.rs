//! `gossip agent`: one node and its admin endpoint, until SIGINT or
//! SIGTERM; then it leaves gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gossip_core::auth::{Key, Keyring};
use gossip_tokio::{Handle, NodeArgs, RecvError, spawn_task};
use tokio::net::TcpListener;

use crate::admin::{Admin, Transitions};
use crate::page::Recent;

/// What `gossip agent` was asked to do.
pub(crate) struct AgentOptions {
    pub(crate) node: NodeArgs,
    pub(crate) admin: SocketAddr,
    pub(crate) key_files: Vec<PathBuf>,
}

/// The agent's `STATUS` while it catches up with the cluster (Cassandra's
/// lifecycle: joining, then `NORMAL`, then `shutdown,true` on leaving).
pub(crate) const STATUS_JOINING: &str = "joining";
/// The agent's `STATUS` once it has the cluster's state.
pub(crate) const STATUS_NORMAL: &str = "NORMAL";

/// Reads the key files into a ring: the first key seals, all are accepted.
/// `None` when there are no key files.
pub(crate) fn load_keys(files: &[PathBuf]) -> Result<Option<Keyring>> {
    let mut ring: Option<Keyring> = None;
    for file in files {
        let context = || format!("key file {}", file.display());
        let bytes = std::fs::read(file).with_context(context)?;
        let key = Key::parse(&bytes)
            .map_err(|e| anyhow!("{e}"))
            .with_context(context)?;
        match &mut ring {
            None => ring = Some(Keyring::new(key)),
            Some(r) => r
                .install(key)
                .map_err(|e| anyhow!("{e}"))
                .with_context(context)?,
        }
    }
    Ok(ring)
}

/// Reads the key files again and hands the ring to the node; what was
/// loaded, in one line.
pub(crate) async fn reload_keys(handle: &Handle, files: &[PathBuf]) -> Result<String> {
    if files.is_empty() {
        bail!("the agent was started without --key-file");
    }
    let ring = load_keys(files)?;
    let summary = ring.as_ref().map_or_else(String::new, |r| {
        format!(
            "keys reloaded: primary {:08x}, {} key(s) accepted\n",
            r.primary().fingerprint(),
            r.keys().count()
        )
    });
    handle.set_keyring(ring).await?;
    tracing::info!("{}", summary.trim_end());
    Ok(summary)
}

/// Resolves `host:port` to one address.
pub(crate) fn resolve(what: &str, s: &str) -> Result<SocketAddr> {
    gossip_tokio::resolve(what, s).map_err(anyhow::Error::msg)
}

/// Runs the agent until SIGINT or SIGTERM, then leaves gracefully.
pub(crate) async fn run(opts: AgentOptions) -> Result<()> {
    let mut cfg = opts.node.node_config().map_err(anyhow::Error::msg)?;
    let own_status = cfg.states.iter().any(|(k, _)| k == "STATUS");
    if !own_status {
        cfg.states
            .insert(0, ("STATUS".into(), STATUS_JOINING.as_bytes().to_vec()));
    }
    cfg.keyring = load_keys(&opts.key_files)?;
    let authenticated = cfg.keyring.is_some();
    let no_seeds = cfg.seeds.is_empty();
    let admin = TcpListener::bind(opts.admin)
        .await
        .with_context(|| format!("cannot bind the admin endpoint {}", opts.admin))?;
    let admin_addr = admin.local_addr()?;
    let running = spawn_task(cfg).await?;
    let handle = running.handle.clone();
    tracing::info!(
        local = %handle.local_addr(),
        generation = handle.generation().0,
        cluster = %opts.node.cluster,
        authenticated,
        admin = %format!("http://{admin_addr}"),
        "gossip agent started"
    );
    let state = Admin {
        handle: handle.clone(),
        key_files: Arc::new(opts.key_files),
        transitions: Arc::new(Transitions::default()),
        recent: Arc::new(Recent::default()),
    };
    let interval = opts.node.interval();
    let tasks = [
        tokio::spawn(follow(state.clone())),
        tokio::spawn(serve(admin, state.clone())),
        tokio::spawn(reload_on_hangup(state.clone())),
        tokio::spawn(warn_if_alone(handle.clone(), interval, opts.node.cluster)),
        tokio::spawn(lifecycle(handle.clone(), interval, no_seeds, own_status)),
    ];
    wait_for_signal().await?;
    tracing::info!("shutting down gracefully");
    for t in &tasks {
        t.abort();
    }
    handle.shutdown().await?;
    let _ = running.task.await;
    Ok(())
}

/// Counts every membership event for `/metrics` and keeps it for the
/// page's timeline (the run loop logs each in one line).
async fn follow(admin: Admin) {
    let mut events = admin.handle.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                let kind = admin.transitions.count(&event);
                admin.recent.push(kind, &event);
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "membership events missed by the agent's counters"
                );
            }
            Err(_) => return,
        }
    }
}

/// Serves the admin endpoint until the agent stops. Errors accepting a
/// connection (out of file descriptors, ...) are axum's to pace.
async fn serve(listener: TcpListener, admin: Admin) {
    if let Err(e) = axum::serve(listener, crate::admin::router(admin)).await {
        tracing::error!(error = %e, "the admin endpoint stopped");
    }
}

/// `STATUS` goes from joining to `NORMAL` once the agent has the cluster's
/// state: a seed or another member answered, and the membership it knows
/// held still for two rounds (a node without seeds is the first: `NORMAL`
/// after its first round).
async fn lifecycle(handle: Handle, interval: Duration, no_seeds: bool, own_status: bool) {
    if own_status {
        return;
    }
    let mut known = usize::MAX;
    let mut still = 0;
    loop {
        tokio::time::sleep(interval).await;
        let Ok(s) = handle.snapshot().await else {
            return;
        };
        let now = s.endpoints.len();
        still = if now == known { still + 1 } else { 0 };
        known = now;
        if no_seeds || (s.alive() > 0 && still >= 2) {
            break;
        }
    }
    match handle.set_state("STATUS", STATUS_NORMAL.as_bytes()).await {
        Ok(_) => tracing::info!(members = known, "has the cluster's state: STATUS NORMAL"),
        Err(e) => tracing::warn!(error = %e, "could not set STATUS"),
    }
}

async fn warn_if_alone(handle: Handle, interval: Duration, cluster: String) {
    tokio::time::sleep(interval.saturating_mul(10)).await;
    if let Ok(s) = handle.snapshot().await
        && s.endpoints.is_empty()
    {
        tracing::warn!(
            "no peer heard from after 10 rounds: are the seeds reachable, and in cluster '{cluster}'?"
        );
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => Ok(r?),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<()> {
    Ok(tokio::signal::ctrl_c().await?)
}

/// Reloads the key files on every SIGHUP.
#[cfg(unix)]
async fn reload_on_hangup(admin: Admin) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = reload_keys(&admin.handle, &admin.key_files).await {
            tracing::error!("SIGHUP: {e:#} (keys unchanged)");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: Admin) {}

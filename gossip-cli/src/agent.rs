//! `gossip agent` (one node and its admin endpoint) and `gossip info` (asks
//! an agent's admin endpoint).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use gossip_core::auth::{Key, Keyring};
use gossip_core::wire::ClusterId;
use gossip_core::{Config, Liveness};
use gossip_tokio::{Handle, NodeConfig, Snapshot, spawn_task};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What `gossip agent` was asked to do.
pub(crate) struct AgentOptions {
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) seeds: Vec<String>,
    pub(crate) cluster: String,
    pub(crate) states: Vec<(String, String)>,
    pub(crate) interval_ms: u64,
    pub(crate) admin: SocketAddr,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) key_files: Vec<PathBuf>,
}

/// Reads the key files into a ring: the first key seals, all are accepted.
/// `None` when there are no key files.
pub(crate) fn load_keys(files: &[PathBuf]) -> Result<Option<Keyring>, String> {
    let mut ring: Option<Keyring> = None;
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("key file {}: {e}", file.display()))?;
        let key = Key::parse(&bytes).map_err(|e| format!("key file {}: {e}", file.display()))?;
        match &mut ring {
            None => ring = Some(Keyring::new(key)),
            Some(r) => r
                .install(key)
                .map_err(|e| format!("key file {}: {e}", file.display()))?,
        }
    }
    Ok(ring)
}

/// Reads the key files again and hands the ring to the node.
async fn reload_keys(handle: &Handle, files: &[PathBuf]) -> Result<String, String> {
    if files.is_empty() {
        return Err("the agent was started without --key-file".into());
    }
    let ring = load_keys(files)?;
    let summary = ring.as_ref().map_or_else(String::new, |r| {
        format!(
            "keys reloaded: primary {:08x}, {} key(s) accepted\n",
            r.primary().fingerprint(),
            r.keys().count()
        )
    });
    handle.set_keyring(ring).await.map_err(|e| e.to_string())?;
    Ok(summary)
}

/// Parses `KEY=VALUE`.
pub(crate) fn parse_state(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// Resolves `host:port` to one address.
fn resolve(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {what} '{s}': {e}"))?
        .next()
        .ok_or_else(|| format!("{what} '{s}' resolves to no address"))
}

/// Runs the agent until SIGINT or SIGTERM, then leaves gracefully.
pub(crate) async fn run(opts: AgentOptions) -> Result<(), String> {
    let mut seeds = Vec::new();
    for s in &opts.seeds {
        seeds.push(resolve("seed", s)?);
    }
    let mut gossip = Config::new(ClusterId::from_name(&opts.cluster));
    gossip.gossip_interval = Duration::from_millis(opts.interval_ms);
    let mut cfg = NodeConfig::new(opts.listen, gossip);
    cfg.advertise = opts.advertise;
    cfg.seeds = seeds;
    cfg.data_dir = opts.data_dir.clone();
    cfg.states = opts
        .states
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    cfg.keyring = load_keys(&opts.key_files)?;
    let authenticated = cfg.keyring.is_some();
    let admin = TcpListener::bind(opts.admin)
        .await
        .map_err(|e| format!("cannot bind the admin endpoint {}: {e}", opts.admin))?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let running = spawn_task(cfg).await.map_err(|e| e.to_string())?;
    let handle = running.handle.clone();
    println!(
        "gossip agent {} (generation {}, cluster '{}'{}), admin on http://{admin_addr}",
        handle.local_addr(),
        handle.generation().0,
        opts.cluster,
        if authenticated { ", authenticated" } else { "" }
    );
    let key_files = std::sync::Arc::new(opts.key_files);
    let server = tokio::spawn(serve(admin, handle.clone(), key_files.clone()));
    let hangups = tokio::spawn(reload_on_hangup(handle.clone(), key_files));
    let lonely = tokio::spawn(warn_if_alone(
        handle.clone(),
        opts.interval_ms,
        opts.cluster.clone(),
    ));
    wait_for_signal().await?;
    println!("shutting down gracefully");
    server.abort();
    lonely.abort();
    hangups.abort();
    handle.shutdown().await.map_err(|e| e.to_string())?;
    let _ = running.task.await;
    Ok(())
}

async fn warn_if_alone(handle: Handle, interval_ms: u64, cluster: String) {
    tokio::time::sleep(Duration::from_millis(interval_ms.saturating_mul(10))).await;
    if let Ok(s) = handle.snapshot().await
        && s.endpoints.is_empty()
    {
        eprintln!(
            "warning: no peer heard from after 10 rounds: are the seeds reachable, and in cluster '{cluster}'?"
        );
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| e.to_string()),
        _ = term.recv() => Ok(()),
    }
}

/// Reloads the key files on every SIGHUP.
#[cfg(unix)]
async fn reload_on_hangup(handle: Handle, files: std::sync::Arc<Vec<PathBuf>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match reload_keys(&handle, &files).await {
            Ok(summary) => print!("{summary}"),
            Err(e) => eprintln!("SIGHUP: {e} (keys unchanged)"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: Handle, _: std::sync::Arc<Vec<PathBuf>>) {}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), String> {
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())
}

/// The admin endpoint: a minimal HTTP/1.1 server for three GET paths and
/// `POST /keys/reload`.
async fn serve(listener: TcpListener, handle: Handle, key_files: std::sync::Arc<Vec<PathBuf>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        let key_files = key_files.clone();
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            // Read the head (bounded: 8 KiB, 5 s).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                    }
                }
            })
            .await;
            let (status, content_type, body) = if read.is_err() {
                ("408 Request Timeout", "text/plain", "timeout\n".to_string())
            } else {
                respond(&request, &handle, &key_files).await
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

async fn respond(
    request: &[u8],
    handle: &Handle,
    key_files: &[PathBuf],
) -> (&'static str, &'static str, String) {
    let line = request.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if (method, path) == ("POST", "/keys/reload") {
        return match reload_keys(handle, key_files).await {
            Ok(summary) => ("200 OK", "text/plain", summary),
            Err(e) => (
                "409 Conflict",
                "text/plain",
                format!("{e} (keys unchanged)\n"),
            ),
        };
    }
    if method != "GET" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            "GET /gossipinfo /cluster /metrics, POST /keys/reload\n".into(),
        );
    }
    let Ok(snapshot) = handle.snapshot().await else {
        return (
            "503 Service Unavailable",
            "text/plain",
            "node stopped\n".into(),
        );
    };
    match path {
        "/gossipinfo" => ("200 OK", "text/plain; charset=utf-8", gossipinfo(&snapshot)),
        "/cluster" => (
            "200 OK",
            "application/json",
            cluster_json(&snapshot).to_string(),
        ),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(&snapshot)),
        _ => (
            "404 Not Found",
            "text/plain",
            "paths: /gossipinfo /cluster /metrics\n".into(),
        ),
    }
}

/// `nodetool gossipinfo`'s layout: `/address`, then `generation:`,
/// `heartbeat:` and `KEY:version:value` lines, every endpoint by address.
pub(crate) fn gossipinfo(s: &Snapshot) -> String {
    let mut all: Vec<&gossip_tokio::EndpointSnapshot> = s.endpoints.iter().collect();
    all.push(&s.local);
    all.sort_by_key(|e| e.address);
    let mut out = String::new();
    for e in all {
        let _ = writeln!(out, "/{}", e.address);
        let _ = writeln!(out, "  generation:{}", e.generation.0);
        let _ = writeln!(out, "  heartbeat:{}", e.heartbeat.0);
        let _ = writeln!(out, "  liveness:{}:{}", e.liveness, e.incarnation);
        for st in &e.states {
            let _ = writeln!(out, "  {}:{}:{}", st.key, st.version.0, st.value_text());
        }
    }
    out
}

fn endpoint_json(e: &gossip_tokio::EndpointSnapshot) -> serde_json::Value {
    let states: serde_json::Map<String, serde_json::Value> = e
        .states
        .iter()
        .map(|s| {
            (
                s.key.clone(),
                serde_json::json!({ "version": s.version.0, "value": s.value_text() }),
            )
        })
        .collect();
    serde_json::json!({
        "address": e.address.to_string(),
        "generation": e.generation.0,
        "heartbeat": e.heartbeat.0,
        "alive": e.alive,
        "liveness": e.liveness.name(),
        "incarnation": e.incarnation,
        "phi": if e.phi.is_finite() { e.phi } else { f64::MAX },
        "states": states,
    })
}

/// `/cluster`: the node and every endpoint it knows.
pub(crate) fn cluster_json(s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "local": endpoint_json(&s.local),
        "endpoints": s.endpoints.iter().map(endpoint_json).collect::<Vec<_>>(),
    })
}

/// `/metrics`: Prometheus text.
pub(crate) fn metrics(s: &Snapshot) -> String {
    let st = &s.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "gossip_datagrams_received_total",
        "Datagrams received.",
        st.datagrams_in,
    );
    counter(
        "gossip_bytes_received_total",
        "Bytes received.",
        st.bytes_in,
    );
    counter(
        "gossip_datagrams_sent_total",
        "Datagrams sent.",
        st.datagrams_out,
    );
    counter("gossip_bytes_sent_total", "Bytes sent.", st.bytes_out);
    counter("gossip_rounds_total", "Gossip rounds run.", st.rounds);
    let _ = writeln!(
        out,
        "# HELP gossip_dropped_datagrams_total Datagrams dropped, by reason.\n# TYPE gossip_dropped_datagrams_total counter"
    );
    for (reason, n) in st.drops() {
        let _ = writeln!(
            out,
            "gossip_dropped_datagrams_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP gossip_endpoints Endpoints known, by liveness (this node not counted).\n# TYPE gossip_endpoints gauge"
    );
    for l in [
        Liveness::Alive,
        Liveness::Suspect,
        Liveness::Down,
        Liveness::Left,
    ] {
        let _ = writeln!(out, "gossip_endpoints{{state=\"{l}\"}} {}", s.count(l));
    }
    for (name, help, n) in [
        ("probes_sent", "Probes started.", st.probes_sent),
        (
            "probe_failures",
            "Probes that failed, directly and through others.",
            st.probe_failures,
        ),
        (
            "ping_reqs_sent",
            "Indirect probes asked of others.",
            st.ping_reqs_sent,
        ),
        (
            "suspicions_raised",
            "Suspicions this node raised or confirmed.",
            st.suspicions_raised,
        ),
        (
            "convictions",
            "Suspicions that timed out here (members claimed down).",
            st.convictions,
        ),
        (
            "refutations",
            "Suspicions of this node that it refuted.",
            st.refutations,
        ),
        (
            "late_rounds",
            "Rounds that started more than half an interval late.",
            st.late_rounds,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP gossip_{name}_total {help}\n# TYPE gossip_{name}_total counter\ngossip_{name}_total {n}"
        );
    }
    out
}

/// `gossip info`: GETs `/gossipinfo` or `/cluster` from an agent.
pub(crate) fn info(admin: &str, json: bool) -> Result<String, String> {
    let addr = resolve("admin endpoint", admin)?;
    let path = if json { "/cluster" } else { "/gossipinfo" };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the agent at {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer in HTTP"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{addr} answered: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

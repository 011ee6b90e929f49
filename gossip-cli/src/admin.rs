//! The agent's admin endpoint, on axum: `GET /gossipinfo` (text, `nodetool
//! gossipinfo`'s layout), `GET /cluster` (JSON), `GET /status` (one line a
//! member), `GET /metrics` (Prometheus / OpenMetrics text), `GET /events`
//! (the membership changes of the last minutes), `GET /` (a page of all
//! that) and `POST /keys/reload`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gossip_core::Liveness;
use gossip_tokio::{EndpointSnapshot, Handle, MembershipEvent, Snapshot};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Admin {
    pub(crate) handle: Handle,
    pub(crate) key_files: Arc<Vec<PathBuf>>,
    pub(crate) transitions: Arc<Transitions>,
    pub(crate) recent: Arc<crate::page::Recent>,
}

/// Membership events seen by the agent, by kind (for `/metrics`).
#[derive(Default)]
pub(crate) struct Transitions([AtomicU64; KINDS.len()]);

/// The kinds of membership event, as `/metrics` labels them.
const KINDS: [&str; 8] = [
    "discovered",
    "up",
    "suspect",
    "down",
    "restarted",
    "shutdown",
    "removed",
    "state",
];

impl Transitions {
    /// Counts `event`; its kind's label.
    pub(crate) fn count(&self, event: &MembershipEvent) -> &'static str {
        let kind = match event {
            MembershipEvent::Discovered { .. } => 0,
            MembershipEvent::Up { .. } => 1,
            MembershipEvent::Suspect { .. } => 2,
            MembershipEvent::Down { .. } => 3,
            MembershipEvent::Restarted { .. } => 4,
            MembershipEvent::ShutDown { .. } => 5,
            MembershipEvent::Removed { .. } => 6,
            _ => 7,
        };
        if let Some(c) = self.0.get(kind) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        KINDS.get(kind).copied().unwrap_or("state")
    }

    fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS
            .iter()
            .zip(&self.0)
            .map(|(k, c)| (*k, c.load(Ordering::Relaxed)))
    }
}

/// The routes.
pub(crate) fn router(admin: Admin) -> Router {
    Router::new()
        .route("/", get(crate::page::page))
        .route("/gossipinfo", get(gossipinfo))
        .route("/cluster", get(cluster))
        .route("/status", get(status))
        .route("/events", get(crate::page::events))
        .route("/metrics", get(metrics))
        .route("/keys/reload", post(reload))
        .with_state(admin)
}

/// The node's loop has ended: every view is gone.
struct Stopped;

impl IntoResponse for Stopped {
    fn into_response(self) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, "node stopped\n").into_response()
    }
}

async fn snapshot(admin: &Admin) -> Result<Snapshot, Stopped> {
    admin.handle.snapshot().await.map_err(|_| Stopped)
}

async fn gossipinfo(State(admin): State<Admin>) -> Result<String, Stopped> {
    Ok(gossipinfo_text(&snapshot(&admin).await?))
}

async fn cluster(State(admin): State<Admin>) -> Result<axum::Json<ClusterView>, Stopped> {
    Ok(axum::Json(ClusterView::of(&snapshot(&admin).await?)))
}

async fn status(State(admin): State<Admin>) -> Result<String, Stopped> {
    Ok(status_text(&ClusterView::of(&snapshot(&admin).await?)))
}

async fn metrics(State(admin): State<Admin>) -> Result<Response, Stopped> {
    let snapshot = snapshot(&admin).await?;
    Ok(match metrics_text(&snapshot, &admin.transitions) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    })
}

async fn reload(State(admin): State<Admin>) -> Response {
    match crate::agent::reload_keys(&admin.handle, &admin.key_files).await {
        Ok(summary) => (StatusCode::OK, summary).into_response(),
        Err(e) => (StatusCode::CONFLICT, format!("{e:#} (keys unchanged)\n")).into_response(),
    }
}

/// `nodetool gossipinfo`'s layout: `/address`, then `generation:`,
/// `heartbeat:` and `KEY:version:value` lines, every endpoint by address.
pub(crate) fn gossipinfo_text(s: &Snapshot) -> String {
    let mut all: Vec<&EndpointSnapshot> = s.endpoints.iter().collect();
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

/// `/cluster`: the node and every endpoint it knows.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    pub(crate) local: EndpointView,
    pub(crate) endpoints: Vec<EndpointView>,
}

/// One endpoint in `/cluster`.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointView {
    pub(crate) address: String,
    pub(crate) generation: u64,
    pub(crate) heartbeat: u64,
    /// Believed up (alive or suspect).
    pub(crate) alive: bool,
    /// `alive`, `suspect`, `down` or `left`.
    pub(crate) liveness: String,
    pub(crate) incarnation: u32,
    /// The failure detector's phi (`null` before any heartbeat interval is
    /// known).
    pub(crate) phi: Option<f64>,
    /// Key to version and value (as text).
    pub(crate) states: BTreeMap<String, StateView>,
}

/// One application state in `/cluster`.
#[derive(Debug, Serialize)]
pub(crate) struct StateView {
    pub(crate) version: u64,
    pub(crate) value: String,
}

impl EndpointView {
    fn of(e: &EndpointSnapshot) -> Self {
        Self {
            address: e.address.to_string(),
            generation: e.generation.0,
            heartbeat: e.heartbeat.0,
            alive: e.alive,
            liveness: e.liveness.name().to_string(),
            incarnation: e.incarnation,
            phi: e.phi.is_finite().then_some(e.phi),
            states: e
                .states
                .iter()
                .map(|s| {
                    (
                        s.key.clone(),
                        StateView {
                            version: s.version.0,
                            value: s.value_text(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl ClusterView {
    pub(crate) fn of(s: &Snapshot) -> Self {
        Self {
            local: EndpointView::of(&s.local),
            endpoints: s.endpoints.iter().map(EndpointView::of).collect(),
        }
    }
}

/// The states `status` shows, when an endpoint has them.
const STATUS_KEYS: [&str; 3] = ["STATUS", "DC", "RACK"];

/// One line a member, as `nodetool status`: address, liveness, generation,
/// heartbeat, phi and the chosen states; the node itself first.
pub(crate) fn status_text(c: &ClusterView) -> String {
    let mut out = format!(
        "{:<2} {:<22} {:<8} {:>11} {:>9} {:>6}  STATES\n",
        "", "ADDRESS", "LIVENESS", "GENERATION", "HEARTBEAT", "PHI"
    );
    let line = |out: &mut String, mark: &str, e: &EndpointView| {
        let phi = e.phi.map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
        let states: Vec<String> = STATUS_KEYS
            .iter()
            .filter_map(|k| e.states.get(*k).map(|s| format!("{k}={}", s.value)))
            .collect();
        let _ = writeln!(
            out,
            "{mark:<2} {:<22} {:<8} {:>11} {:>9} {:>6}  {}",
            e.address,
            e.liveness,
            e.generation,
            e.heartbeat,
            phi,
            states.join(" ")
        );
    };
    line(&mut out, "*", &c.local);
    for e in &c.endpoints {
        let mark = match e.liveness.as_str() {
            "alive" => "UN",
            "suspect" => "US",
            "left" => "DL",
            _ => "DN",
        };
        line(&mut out, mark, e);
    }
    out
}

/// `/metrics`: the node's counters and gauges, and the agent's count of
/// membership transitions, as OpenMetrics text.
pub(crate) fn metrics_text(s: &Snapshot, t: &Transitions) -> Result<String, std::fmt::Error> {
    type Labels = Vec<(String, String)>;
    let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    let st = &s.stats;
    let mut reg = Registry::with_prefix("gossip");
    for (name, help, value) in [
        ("datagrams_received", "Datagrams received.", st.datagrams_in),
        ("bytes_received", "Bytes received.", st.bytes_in),
        ("datagrams_sent", "Datagrams sent.", st.datagrams_out),
        ("bytes_sent", "Bytes sent.", st.bytes_out),
        ("rounds", "Gossip rounds run.", st.rounds),
        (
            "late_rounds",
            "Rounds that started more than half an interval late.",
            st.late_rounds,
        ),
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
            "corrections_sent",
            "Members told our newer claim after they spread an older one.",
            st.corrections_sent,
        ),
    ] {
        reg.register(name, help, counter(value));
    }
    let drops = Family::<Labels, Counter>::default();
    for (reason, n) in st.drops() {
        drops
            .get_or_create(&label("reason", reason.name()))
            .inc_by(n);
    }
    reg.register("dropped_datagrams", "Datagrams dropped, by reason.", drops);
    let endpoints = Family::<Labels, Gauge>::default();
    for l in [
        Liveness::Alive,
        Liveness::Suspect,
        Liveness::Down,
        Liveness::Left,
    ] {
        let n = i64::try_from(s.count(l)).unwrap_or(i64::MAX);
        endpoints.get_or_create(&label("state", l.name())).set(n);
    }
    reg.register(
        "endpoints",
        "Endpoints known, by liveness (this node not counted).",
        endpoints,
    );
    let transitions = Family::<Labels, Counter>::default();
    for (kind, n) in t.counts() {
        transitions.get_or_create(&label("kind", kind)).inc_by(n);
    }
    reg.register(
        "membership_transitions",
        "Membership events this agent saw, by kind.",
        transitions,
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

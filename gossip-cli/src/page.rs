//! `GET /`: a page to look at the cluster from one agent, self-contained (no
//! external assets): every member with its liveness (as a colour),
//! generation, heartbeat, phi and states, and the membership changes of the
//! last minutes as a timeline. It reads `/cluster` and `/events` every
//! second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Html;
use gossip_tokio::MembershipEvent;
use serde::Serialize;

use crate::admin::Admin;

/// How long changes stay on the timeline.
const KEEP: Duration = Duration::from_secs(10 * 60);
/// The most changes kept.
const MOST: usize = 1000;

/// The membership changes of the last minutes, newest last.
#[derive(Default)]
pub(crate) struct Recent(Mutex<VecDeque<Change>>);

/// One membership change on the timeline.
#[derive(Clone, Serialize)]
pub(crate) struct Change {
    /// Milliseconds since the Unix epoch.
    at_ms: u64,
    /// `up`, `down`, `suspect`, `restarted`, `shutdown`, `removed`,
    /// `discovered` or `state`.
    kind: &'static str,
    endpoint: String,
    /// The event in one line.
    text: String,
}

impl Recent {
    /// Records `event`, now.
    pub(crate) fn push(&self, kind: &'static str, event: &MembershipEvent) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(Change {
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            kind,
            endpoint: event.endpoint().to_string(),
            text: event.to_string(),
        });
        let oldest = at.saturating_sub(KEEP).as_millis();
        while q.len() > MOST || q.front().is_some_and(|c| u128::from(c.at_ms) < oldest) {
            q.pop_front();
        }
    }

    fn all(&self) -> Vec<Change> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// `GET /events`: the timeline, oldest first.
pub(crate) async fn events(State(admin): State<Admin>) -> axum::Json<Vec<Change>> {
    axum::Json(admin.recent.all())
}

/// `GET /`.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gossip cluster</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .3em; }
  #summary { color: #555; margin-bottom: 1em; }
  table { border-collapse: collapse; }
  th, td { padding: .25em .7em; text-align: left; border-bottom: 1px solid #ddd; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .liveness { display: inline-block; min-width: 4.5em; padding: 0 .4em; border-radius: .3em; color: #fff; }
  .alive { background: #2e7d32; } .suspect { background: #ef8f00; }
  .down { background: #c62828; } .left { background: #757575; }
  .self { font-weight: bold; }
  #timeline { list-style: none; padding: 0; max-height: 22em; overflow-y: auto; }
  #timeline li { padding: .15em 0; border-bottom: 1px dotted #eee; }
  #timeline time { color: #777; margin-right: .8em; font-variant-numeric: tabular-nums; }
  #error { color: #c62828; }
</style>
</head>
<body>
<h1>gossip cluster</h1>
<div id="summary">loading&hellip;</div>
<div id="error"></div>
<table>
  <thead><tr><th>address</th><th>liveness</th><th>generation</th><th>heartbeat</th><th>phi</th><th>states</th></tr></thead>
  <tbody id="members"></tbody>
</table>
<h2>membership changes</h2>
<ul id="timeline"></ul>
<script>
"use strict";
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function member(e, self) {
  const tr = document.createElement("tr");
  tr.dataset.address = e.address;
  tr.dataset.liveness = e.liveness;
  cell(tr, e.address + (self ? " (this agent)" : ""), self ? "self" : "");
  const live = cell(tr, "");
  const badge = document.createElement("span");
  badge.className = "liveness " + e.liveness;
  badge.textContent = e.liveness;
  live.appendChild(badge);
  cell(tr, e.generation, "num");
  cell(tr, e.heartbeat, "num");
  cell(tr, e.phi === null ? "-" : e.phi.toFixed(1), "num");
  cell(tr, Object.entries(e.states).map(([k, s]) => k + "=" + s.value).join("  "));
  return tr;
}
async function refresh() {
  try {
    const [cluster, events] = await Promise.all([
      fetch("/cluster").then(r => r.json()),
      fetch("/events").then(r => r.json()),
    ]);
    const body = document.getElementById("members");
    body.replaceChildren(member(cluster.local, true), ...cluster.endpoints.map(e => member(e, false)));
    const alive = cluster.endpoints.filter(e => e.alive).length;
    document.getElementById("summary").textContent =
      `${cluster.local.address}: ${cluster.endpoints.length} other members known, ${alive} up`;
    const list = document.getElementById("timeline");
    list.replaceChildren(...events.slice().reverse().map(c => {
      const li = document.createElement("li");
      li.dataset.kind = c.kind;
      const t = document.createElement("time");
      t.textContent = new Date(c.at_ms).toLocaleTimeString();
      li.append(t, c.text);
      return li;
    }));
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "the agent does not answer: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"#;

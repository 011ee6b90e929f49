//! A node's command-line options (feature `clap`), shared by the binaries
//! that start one: `gossip agent` and the bindings' examples flatten them
//! into their own arguments.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::{ClusterId, Config, NodeConfig};

/// One node's options: where it listens and is reached, how it joins, what
/// it publishes. `#[command(flatten)]` it into a binary's arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The UDP address to bind, and this node's identity unless --advertise
    /// gives another (0.0.0.0:PORT binds every interface, and then needs
    /// --advertise).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The address peers reach this node at, its identity in the cluster
    /// (Cassandra's broadcast_address); default: the --listen address.
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// A seed to join through, host:port (repeat for more).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// The cluster's name: nodes of other clusters are ignored.
    #[arg(long, default_value = "gossip")]
    pub cluster: String,
    /// An application state to publish, KEY=VALUE (repeat for more).
    #[arg(long = "state", value_parser = parse_state)]
    pub states: Vec<(String, String)>,
    /// Gossip interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub interval_ms: u64,
    /// Where to keep the generation, so it increases across restarts.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl NodeArgs {
    /// The gossip interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The node these options describe, with [`Config::new`]'s defaults
    /// otherwise. Seeds are resolved now; a seed that does not resolve is an
    /// error that names it.
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let mut gossip = Config::new(ClusterId::from_name(&self.cluster));
        gossip.gossip_interval = self.interval();
        let mut config = NodeConfig::new(self.listen, gossip);
        config.advertise = self.advertise;
        config.data_dir = self.data_dir.clone();
        for seed in &self.seeds {
            config.seeds.push(resolve("seed", seed)?);
        }
        config.states = self
            .states
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        Ok(config)
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_state(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// Resolves `host:port` (`what` names it in errors) to its first address.
pub fn resolve(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {what} '{s}': {e}"))?
        .next()
        .ok_or_else(|| format!("{what} '{s}' resolves to no address"))
}

//! Faults on real datagrams: nftables rules in the harness's own network
//! namespace (random loss, cuts between addresses), and the check that it is
//! one, so the host's firewall is never touched.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cluster::GOSSIP_PORT;

/// The nftables table the harness owns.
const TABLE: &str = "gossip_faults";

/// Fails unless this process runs in the network namespace `name` (made by
/// `ip netns add`, so `/run/netns/name`): the rules below must never reach
/// the host's own namespace.
pub(crate) fn require_namespace(name: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new("/run/netns").join(name);
    let theirs = std::fs::metadata(&path)
        .with_context(|| format!("no network namespace {} ({})", name, path.display()))?;
    let mine = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    if (mine.dev(), mine.ino()) != (theirs.dev(), theirs.ino()) {
        bail!(
            "refusing to run outside the network namespace {name}: run through scripts/faults.sh, which makes one"
        );
    }
    Ok(())
}

fn nft(args: &[&str]) -> Result<String> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .context("running nft (is nftables installed?)")?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The harness's rules: chain `loss` (random drops) and chain `cut` (drops
/// by source and destination), both on the output hook, so each datagram
/// is judged once, and each rule counts what it dropped.
pub(crate) struct Firewall;

impl Firewall {
    /// Creates the table and its two chains, empty.
    pub(crate) fn install() -> Result<Firewall> {
        nft(&["add", "table", "inet", TABLE])?;
        for chain in ["loss", "cut"] {
            nft(&[
                "add",
                "chain",
                "inet",
                TABLE,
                chain,
                "{ type filter hook output priority 0; policy accept; }",
            ])?;
        }
        Ok(Firewall)
    }

    /// Drops `percent` % of gossip datagrams at random (0: none).
    pub(crate) fn loss(&self, percent: u8) -> Result<()> {
        nft(&["flush", "chain", "inet", TABLE, "loss"])?;
        if percent > 0 {
            let rule =
                format!("udp dport {GOSSIP_PORT} numgen random mod 100 < {percent} counter drop");
            nft(&["add", "rule", "inet", TABLE, "loss", &rule])?;
        }
        Ok(())
    }

    /// Drops every gossip datagram from any of `from` to any of `to`.
    pub(crate) fn cut(&self, from: &[Ipv4Addr], to: &[Ipv4Addr]) -> Result<()> {
        let set = |a: &[Ipv4Addr]| {
            a.iter()
                .map(Ipv4Addr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rule = format!(
            "ip saddr {{ {} }} ip daddr {{ {} }} udp dport {GOSSIP_PORT} counter drop",
            set(from),
            set(to)
        );
        nft(&["add", "rule", "inet", TABLE, "cut", &rule])?;
        Ok(())
    }

    /// Datagrams the rules dropped so far (both chains).
    pub(crate) fn dropped(&self) -> u64 {
        let Ok(listing) = nft(&["list", "table", "inet", TABLE]) else {
            return 0;
        };
        listing
            .split("packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Removes every fault.
    pub(crate) fn clear(&self) -> Result<()> {
        nft(&["flush", "chain", "inet", TABLE, "loss"])?;
        nft(&["flush", "chain", "inet", TABLE, "cut"])?;
        Ok(())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", TABLE]);
    }
}

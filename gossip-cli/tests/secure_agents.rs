//! Agents with cluster keys on 127.0.0.3x: a node with another key stays
//! out; random and hostile datagrams (unsealed, wrongly sealed, replayed)
//! change nothing and the agent keeps serving; keys rotate through the key
//! files and `POST /keys/reload` with no downtime. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use gossip_core::auth::{Key, Keyring, TRAILER_LEN};
use gossip_core::state::{DeltaItem, Generation, StateKey, Version, VersionedValue};
use gossip_core::wire::{Ack2Writer, ClusterId, Header, SynWriter};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

mod common;
use common::{Agents, admin, agent_command, cluster_at, view_at, wait};

const CLUSTER: &str = "secure-test";

fn gossip_addr(i: usize) -> String {
    format!("127.0.0.{}:7946", 31 + i)
}

fn admin_addr(i: usize) -> String {
    format!("127.0.0.{}:7947", 31 + i)
}

fn spawn_agent(i: usize, key_files: &[&Path]) -> Child {
    let seed = gossip_addr(0);
    let mut cmd = agent_command(
        &gossip_addr(i),
        &admin_addr(i),
        CLUSTER,
        (i > 0).then_some(seed.as_str()),
    );
    for f in key_files {
        cmd.arg("--key-file").arg(f);
    }
    cmd.spawn().expect("the gossip binary starts")
}

fn alive(i: usize, of: usize) -> bool {
    view_at(&admin_addr(i), &gossip_addr(of)).is_some_and(|v| v["alive"] == true)
}

/// The agent's drop counter for `reason`, from `/metrics`.
fn dropped(i: usize, reason: &str) -> u64 {
    let (_, text) = admin(&admin_addr(i), "GET", "/metrics").unwrap_or_default();
    let needle = format!("reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| {
            l.split_once(&needle)
                .map(|(_, n)| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn ack2(sender: SocketAddr, about: SocketAddr, version: u64) -> Vec<u8> {
    let header = Header {
        cluster: ClusterId::from_name(CLUSTER),
        sender,
    };
    let mut buf = vec![0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    w.push_delta(
        about,
        Generation(1_700_000_000),
        Default::default(),
        [
            DeltaItem::State(
                StateKey::parse("EVIL"),
                VersionedValue {
                    version: Version(version),
                    value: b"1",
                },
            ),
            DeltaItem::Heartbeat(Version(version + 1)),
        ],
    );
    let n = w.finish();
    buf.truncate(n);
    buf
}

fn seal(bytes: &[u8], key: &Key, seq: u64) -> Vec<u8> {
    let mut buf = bytes.to_vec();
    buf.resize(bytes.len() + TRAILER_LEN, 0);
    let n = Keyring::new(key.clone())
        .seal(&mut buf, bytes.len(), seq)
        .unwrap();
    buf.truncate(n);
    buf
}

fn write_key(path: &Path, key: &[u8; 32], hex: bool) {
    if hex {
        let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(path, format!("{text}\n")).unwrap();
    } else {
        std::fs::write(path, key).unwrap();
    }
}

#[test]
fn keyed_agents_shut_out_strangers_survive_hostile_datagrams_and_rotate_keys() {
    let dir: PathBuf = std::env::temp_dir().join(format!("gossip-secure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (k1, k2) = ([0x11u8; 32], [0x22u8; 32]);
    let (primary, next, other) = (
        dir.join("primary.key"),
        dir.join("next.key"),
        dir.join("other.key"),
    );
    write_key(&primary, &k1, false);
    write_key(&next, &k1, true);
    write_key(&other, &k2, true);

    // A and B share the cluster key; C has another.
    let agents = Agents(vec![
        Some(spawn_agent(0, &[&primary, &next])),
        Some(spawn_agent(1, &[&primary, &next])),
        Some(spawn_agent(2, &[&other])),
    ]);
    wait("A and B see each other", Duration::from_secs(30), || {
        alive(0, 1) && alive(1, 0)
    });
    wait("C refused for its MAC", Duration::from_secs(10), || {
        dropped(0, "bad_mac") > 0
    });
    assert!(
        view_at(&admin_addr(0), &gossip_addr(2)).is_none(),
        "C joined without the key"
    );

    // Hostile datagrams from 127.0.0.40: random bytes, unsealed messages,
    // messages sealed with a wrong key, and one sealed message replayed.
    let attacker = UdpSocket::bind("127.0.0.40:0").unwrap();
    let target: SocketAddr = gossip_addr(0).parse().unwrap();
    let b: SocketAddr = gossip_addr(1).parse().unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(40);
    let invented = |i: u32| SocketAddr::from(([10, 99, (i >> 8) as u8, i as u8], 7000));
    let wrong = Key::new([0x33; 32]);
    for i in 0..600u32 {
        let bytes = match i % 4 {
            0 => (0..rng.next_u32() % 1400)
                .map(|_| rng.next_u32() as u8)
                .collect(),
            // Forged: "B says an invented node is alive", unsealed.
            1 => ack2(b, invented(i), 5),
            2 => seal(&ack2(b, invented(i), 5), &wrong, u64::from(i)),
            _ => {
                let header = Header {
                    cluster: ClusterId::from_name(CLUSTER),
                    sender: b,
                };
                let mut buf = vec![0u8; 1400];
                let n = SynWriter::new(&mut buf, &header, &[])
                    .unwrap()
                    .finish(gossip_core::wire::RingRange::WHOLE);
                let mut d = buf[..n].to_vec();
                let at = rng.next_u32() as usize % d.len();
                d[at] ^= 1 + rng.next_u32() as u8 % 255;
                d
            }
        };
        let _ = attacker.send_to(&bytes, target);
    }
    // A key holder's datagram (a member announcing itself), sent again and
    // again: taken once, then counted as a replay every time. Sent in
    // batches of 10 at each poll until 49 replays are counted: loopback
    // drops what overflows A's socket buffer, as after the burst above on a
    // busy machine. (A key holder could also speak as B, with a sequence
    // number far ahead of B's own, and A would then drop B's real datagrams
    // as replays: a shared cluster key trusts every holder.)
    let keyed = seal(
        &ack2(invented(9999), invented(9999), 5),
        &Key::new(k1),
        u64::MAX - 1,
    );
    wait("the replays counted", Duration::from_secs(10), || {
        for _ in 0..10 {
            let _ = attacker.send_to(&keyed, target);
        }
        dropped(0, "replayed") >= 49
    });
    assert!(dropped(0, "missing_auth") > 0);
    let c = cluster_at(&admin_addr(0)).expect("A still serves its admin endpoint");
    let endpoints: Vec<String> = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    assert!(endpoints.contains(&gossip_addr(1)));
    assert!(
        endpoints.contains(&invented(9999).to_string()),
        "the key holder's datagram"
    );
    assert_eq!(
        endpoints.len(),
        2,
        "nothing from the unkeyed datagrams: {endpoints:?}"
    );
    assert!(alive(0, 1) && alive(1, 0), "B still alive after the flood");

    // Rotation to k2 through the files, with no downtime: accept k2, then
    // seal with it. C (k2 only) can then join.
    write_key(&next, &k2, true);
    for i in 0..2 {
        let (status, body) = admin(&admin_addr(i), "POST", "/keys/reload").unwrap();
        assert!(status.contains("200"), "{status}: {body}");
        assert!(body.contains("2 key(s)"), "{body}");
    }
    std::thread::sleep(Duration::from_secs(1));
    write_key(&primary, &k2, false);
    write_key(&next, &k1, true);
    for i in 0..2 {
        let pid = agents.0[i].as_ref().unwrap().id();
        // A by signal, B by the admin endpoint.
        if i == 0 {
            let ok = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
        } else {
            let (status, _) = admin(&admin_addr(i), "POST", "/keys/reload").unwrap();
            assert!(status.contains("200"));
        }
    }
    wait(
        "C joins once the cluster seals with k2",
        Duration::from_secs(30),
        || {
            // A and B must never lose each other meanwhile.
            assert!(
                alive(0, 1) && alive(1, 0),
                "A and B lost each other during rotation"
            );
            alive(0, 2) && alive(2, 0) && alive(1, 2)
        },
    );

    // A bad key file is refused and the keys stay.
    std::fs::write(&next, "not a key").unwrap();
    let (status, body) = admin(&admin_addr(0), "POST", "/keys/reload").unwrap();
    assert!(
        status.contains("409") && body.contains("key file"),
        "{status}: {body}"
    );
    assert!(alive(0, 1));
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

extern crate std;

use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::string::String;
use std::vec::Vec;

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use super::codec::COUNT_RESERVE;
use super::*;
use crate::state::tests::OwnedKey;
use crate::state::{ApplicationState, DeltaItem, StateKey, VersionedValue};

const CLUSTER: ClusterId = ClusterId::from_name("golden");

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn header(sender: &str) -> Header {
    Header {
        cluster: CLUSTER,
        sender: addr(sender),
    }
}

/// An owned endpoint delta, for building and comparing messages in tests.
#[derive(Clone, Debug, PartialEq)]
struct OwnedDelta {
    endpoint: SocketAddr,
    generation: u64,
    claim: Claim,
    entries: Vec<(OwnedKey, u64, Vec<u8>)>,
    heartbeat: Option<u64>,
}

impl OwnedDelta {
    /// Items as a writer takes them: entries, then the heartbeat last.
    fn items(&self) -> Vec<DeltaItem<'_>> {
        let mut items: Vec<DeltaItem<'_>> = self
            .entries
            .iter()
            .map(|(k, v, value)| {
                DeltaItem::State(
                    k.borrow(),
                    VersionedValue {
                        version: Version(*v),
                        value,
                    },
                )
            })
            .collect();
        items.extend(self.heartbeat.map(|v| DeltaItem::Heartbeat(Version(v))));
        items
    }

    fn from_view(endpoint: SocketAddr, claim: Claim, delta: &Delta<'_>) -> Self {
        OwnedDelta {
            endpoint,
            generation: delta.generation.0,
            claim,
            entries: delta
                .entries
                .map(|(k, v)| (owned_key(&k), v.version.0, v.value.to_vec()))
                .collect(),
            heartbeat: delta.heartbeat.map(|v| v.0),
        }
    }
}

fn owned_key(key: &StateKey<'_>) -> OwnedKey {
    match key {
        StateKey::Known(s) => OwnedKey::Known(*s),
        StateKey::User(n) => OwnedKey::User((*n).into()),
        StateKey::Unknown(c) => OwnedKey::Unknown(*c),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum OwnedMessage {
    Syn(
        Vec<GossipDigest>,
        RingRange,
        Option<Summary>,
        Option<(u32, Vec<u8>)>,
    ),
    Ack(Vec<GossipDigest>, Vec<OwnedDelta>),
    Ack2(Vec<OwnedDelta>),
    /// The delta's endpoint is the header's sender; its claim is unused.
    Shutdown(OwnedDelta),
    CatchUp(Vec<OwnedDelta>, u32, bool),
    Probe(Probe),
}

/// Encodes `rumors` and `msg` into `buf`, as many items as fit.
fn encode_with(
    header: &Header,
    rumors: &[Rumor],
    msg: &OwnedMessage,
    buf: &mut [u8],
) -> Result<usize, Error> {
    Ok(match msg {
        OwnedMessage::Syn(digests, range, summary, filter) => {
            let mut w = match summary {
                Some(summary) => SynWriter::with_summary(buf, header, rumors, summary)?,
                None => SynWriter::new(buf, header, rumors)?,
            };
            for d in digests {
                w.push(d);
            }
            // A filter that does not fit whole is left out.
            let filter = filter
                .as_ref()
                .filter(|(_, bits)| w.reserve_filter(bits.len()) == bits.len())
                .map(|(salt, bits)| Filter::new(*salt, bits));
            w.finish_with_filter(*range, filter)
        }
        OwnedMessage::Ack(requests, deltas) => {
            let mut w = AckWriter::new(buf, header, rumors)?;
            for r in requests {
                w.push_request(r);
            }
            for d in deltas {
                w.push_delta(d.endpoint, Generation(d.generation), d.claim, d.items());
            }
            w.finish()
        }
        OwnedMessage::Ack2(deltas) => {
            let mut w = Ack2Writer::new(buf, header, rumors)?;
            for d in deltas {
                w.push_delta(d.endpoint, Generation(d.generation), d.claim, d.items());
            }
            w.finish()
        }
        OwnedMessage::Shutdown(d) => {
            encode_shutdown(buf, header, rumors, Generation(d.generation), d.items())?
        }
        OwnedMessage::CatchUp(deltas, next, more) => {
            let mut w = CatchUpWriter::new(buf, header, rumors)?;
            for d in deltas {
                w.push_delta(d.endpoint, Generation(d.generation), d.claim, d.items());
            }
            w.finish(*next, *more)
        }
        OwnedMessage::Probe(p) => encode_probe(buf, header, rumors, p)?,
    })
}

fn to_owned(datagram: &Datagram<'_>) -> OwnedMessage {
    let deltas = |ds: Deltas<'_>| -> Vec<OwnedDelta> {
        ds.map(|d| OwnedDelta::from_view(d.endpoint, d.claim, &d.delta))
            .collect()
    };
    match datagram.message {
        Message::Syn(s) => OwnedMessage::Syn(
            s.digests.collect(),
            s.range,
            s.summary.map(Summary::from_wire),
            s.filter.map(|f| (f.salt(), f.bits().to_vec())),
        ),
        Message::Ack(a) => OwnedMessage::Ack(a.requests.collect(), deltas(a.deltas)),
        Message::Ack2(a) => OwnedMessage::Ack2(deltas(a.deltas)),
        Message::CatchUp(c) => OwnedMessage::CatchUp(deltas(c.deltas), c.next, c.more),
        Message::Shutdown(s) => OwnedMessage::Shutdown(OwnedDelta::from_view(
            datagram.header.sender,
            Claim::default(),
            &s.delta,
        )),
        Message::Probe(p) => OwnedMessage::Probe(p),
    }
}

fn claim(incarnation: u32, status: Status, confirmers: u8) -> Claim {
    Claim {
        incarnation,
        status,
        confirmers,
    }
}

/// The rumors the golden datagram `name` carries.
fn golden_rumors(name: &str) -> Vec<Rumor> {
    let rumor = |endpoint: &str, generation: u64, claim: Claim| Rumor {
        endpoint: addr(endpoint),
        generation: Generation(generation),
        claim,
    };
    match name {
        // Suspect at incarnation 2, confirmed by two nodes (bits 0 and 2).
        "syn" => std::vec![rumor(
            "10.0.0.3:7000",
            1_700_000_002,
            claim(2, Status::Suspect, 0b101)
        )],
        "news" => std::vec![rumor(
            "10.0.0.2:7000",
            1_700_000_001,
            claim(0, Status::Left, 0)
        )],
        _ => Vec::new(),
    }
}

fn digest(endpoint: &str, generation: u64, version: u64) -> GossipDigest {
    GossipDigest {
        endpoint: addr(endpoint),
        generation: Generation(generation),
        max_version: Version(version),
        claim: Default::default(),
    }
}

fn golden_messages() -> Vec<(&'static str, Header, OwnedMessage, &'static str)> {
    let status = OwnedKey::Known(ApplicationState::Status);
    std::vec![
        (
            "syn",
            header("10.0.0.1:7000"),
            OwnedMessage::Syn(
                std::vec![
                    digest("10.0.0.1:7000", 1_700_000_000, 42),
                    GossipDigest {
                        claim: Claim::alive(1),
                        ..digest("10.0.0.2:7000", 1_700_000_001, 7)
                    },
                ],
                RingRange::WHOLE,
                None,
                None,
            ),
            "4753040044ad051701000a000001d836 01 000a000003d83682e2cfaa068512 02 000a000001d83680e2cfaa062a00 000a000002d83681e2cfaa06078008 00 ffffffff0f 00 00",
        ),
        (
            "ack",
            header("10.0.0.2:7000"),
            OwnedMessage::Ack(
                std::vec![digest("10.0.0.3:7000", 1_700_000_002, 0)],
                std::vec![OwnedDelta {
                    endpoint: addr("10.0.0.2:7000"),
                    generation: 1_700_000_001,
                    claim: claim(3, Status::Down, 0),
                    entries: std::vec![
                        (status.clone(), 5, b"NORMAL".to_vec()),
                        (OwnedKey::User("zone".into()), 6, b"eu-1".to_vec()),
                    ],
                    heartbeat: Some(8),
                }],
            ),
            "4753040044ad051702000a000002d836 00 01 000a000003d83682e2cfaa060000 01 000a000002d83681e2cfaa06801c 02 0105064e4f524d414c 00047a6f6e65060465752d31 0108",
        ),
        (
            "ack2",
            header("[::1]:7001"),
            OwnedMessage::Ack2(std::vec![OwnedDelta {
                endpoint: addr("10.0.0.3:7000"),
                generation: 1_700_000_002,
                claim: Claim::default(),
                entries: std::vec![
                    (OwnedKey::Known(ApplicationState::Load), 3, b"0.5".to_vec()),
                    (OwnedKey::Unknown(300), 4, b"x".to_vec()),
                ],
                heartbeat: None,
            }]),
            "4753040044ad0517030100000000000000000000000000000001d936 00 01 000a000003d83682e2cfaa0600 02 020303302e35 ac0204017800",
        ),
        (
            "shutdown",
            header("10.0.0.1:7000"),
            OwnedMessage::Shutdown(OwnedDelta {
                endpoint: addr("10.0.0.1:7000"),
                generation: 1_700_000_000,
                claim: Claim::default(),
                entries: std::vec![(status, 43, b"shutdown,true".to_vec())],
                heartbeat: Some(Version::MAX.0),
            }),
            "4753040044ad051704000a000001d836 00 80e2cfaa06 01 012b0d73687574646f776e2c74727565 01ffffffff0f",
        ),
        (
            "ping",
            header("10.0.0.1:7000"),
            OwnedMessage::Probe(Probe::Ping { seq: 300 }),
            "4753040044ad051705000a000001d836 00 ac02",
        ),
        (
            "ping-req",
            header("10.0.0.1:7000"),
            OwnedMessage::Probe(Probe::PingReq {
                seq: 7,
                target: addr("[::1]:7001"),
            }),
            "4753040044ad051706000a000001d836 00 07 0100000000000000000000000000000001d936",
        ),
        (
            "ping-ack",
            header("10.0.0.1:7000"),
            OwnedMessage::Probe(Probe::PingAck { seq: 300 }),
            "4753040044ad051707000a000001d836 00 ac02",
        ),
        (
            "nack",
            header("10.0.0.1:7000"),
            OwnedMessage::Probe(Probe::Nack { seq: 0 }),
            "4753040044ad051708000a000001d836 00 00",
        ),
        (
            "catch-up",
            header("10.0.0.1:7000"),
            OwnedMessage::CatchUp(
                std::vec![OwnedDelta {
                    endpoint: addr("10.0.0.3:7000"),
                    generation: 1_700_000_002,
                    claim: Claim::default(),
                    entries: std::vec![(
                        OwnedKey::Known(ApplicationState::Status),
                        5,
                        b"NORMAL".to_vec(),
                    )],
                    heartbeat: Some(9),
                }],
                300,
                true,
            ),
            "4753040044ad05170a000a000001d836 00 01 000a000003d83682e2cfaa0600 01 0105064e4f524d414c 0109 ac02 01",
        ),
        (
            "syn-filter",
            header("10.0.0.1:7000"),
            OwnedMessage::Syn(
                std::vec![digest("10.0.0.1:7000", 1_700_000_000, 42)],
                RingRange {
                    start: 0x1000_0000,
                    end: 0x1fff_ffff,
                },
                None,
                Some((0x0102_0304, std::vec![1, 0, 0, 0, 0, 0, 0, 0x80])),
            ),
            "4753040044ad051701000a000001d836 00 01 000a000001d83680e2cfaa062a00 8080808001 ffffffff01 00 0c 04030201 0100000000000080",
        ),
        (
            "news",
            header("10.0.0.1:7000"),
            OwnedMessage::Probe(Probe::News),
            "4753040044ad051709000a000001d836 01 000a000002d83681e2cfaa068006",
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn golden_vectors() {
    for (name, header, msg, golden) in golden_messages() {
        let golden = unhex(golden);
        // Decode and compare.
        let datagram = decode(&golden, CLUSTER).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(datagram.header, header, "{name}");
        assert_eq!(datagram.auth_tag, None, "{name}");
        assert_eq!(to_owned(&datagram), msg, "{name}");
        let rumors = golden_rumors(name);
        assert_eq!(datagram.rumors.collect::<Vec<_>>(), rumors, "{name}");
        // Re-encode to the same bytes.
        let mut buf = [0u8; 1400];
        let len = encode_with(&header, &rumors, &msg, &mut buf).unwrap();
        assert_eq!(hex(&buf[..len]), hex(&golden), "{name}");
    }
}

#[test]
fn ring_ranges_wrap() {
    let r = RingRange {
        start: u32::MAX - 1,
        end: 1,
    };
    assert!(r.contains(u32::MAX) && r.contains(0) && r.contains(1));
    assert!(!r.contains(2) && !r.contains(u32::MAX - 2));
    assert!(!r.is_whole());
    assert!(RingRange::WHOLE.is_whole() && RingRange::WHOLE.contains(12345));
    assert!(RingRange { start: 7, end: 6 }.is_whole());
    // The position is the same on every node and spreads addresses.
    assert_eq!(
        ring_position(&addr("10.0.0.1:7000")),
        ring_position(&addr("10.0.0.1:7000"))
    );
    assert_ne!(
        ring_position(&addr("10.0.0.1:7000")),
        ring_position(&addr("10.0.0.2:7000"))
    );
    assert_ne!(
        ring_position(&addr("10.0.0.1:7000")),
        ring_position(&addr("10.0.0.1:7001"))
    );
}

#[test]
fn golden_prefix_layout() {
    let (_, _, _, syn) = golden_messages().remove(0);
    let bytes = unhex(syn);
    assert_eq!(&bytes[0..2], b"GS");
    assert_eq!(bytes[2], PROTOCOL_VERSION);
    assert_eq!(bytes[3], 0);
    assert_eq!(
        u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
        CLUSTER.0
    );
    assert_eq!(bytes[8], Kind::Syn as u8);
    // IPv4 sender: variant 0, four address bytes, port 7000 as a varint.
    assert_eq!(&bytes[9..16], &[0, 10, 0, 0, 1, 0xd8, 0x36]);
}

#[test]
fn auth_trailer_is_split_off() {
    let (_, header, msg, syn) = golden_messages().remove(0);
    let mut bytes = unhex(syn);
    bytes[3] |= FLAG_AUTH;
    let tag = [0xAB; 16];
    bytes.extend_from_slice(&tag);
    bytes.push(16);
    let datagram = decode(&bytes, CLUSTER).unwrap();
    assert_eq!(datagram.auth_tag, Some(&tag[..]));
    assert_eq!(datagram.header, header);
    assert_eq!(to_owned(&datagram), msg);
    // A trailer longer than the datagram is truncation.
    let last = bytes.len() - 1;
    bytes[last] = 255;
    assert_eq!(decode(&bytes, CLUSTER), Err(Error::Truncated));
}

#[test]
fn each_defect_is_its_own_error() {
    let (_, _, _, syn) = golden_messages().remove(0);
    let good = unhex(syn);
    assert!(decode(&good, CLUSTER).is_ok());

    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        decode(&b, CLUSTER).map(|_| ())
    };
    assert_eq!(with(&|b| b.truncate(0)), Err(Error::Truncated));
    assert_eq!(with(&|b| b.truncate(8)), Err(Error::Truncated));
    assert_eq!(with(&|b| b[0] = b'X'), Err(Error::BadMagic));
    assert_eq!(with(&|b| b[2] = 1), Err(Error::UnsupportedVersion(1)));
    assert_eq!(with(&|b| b[3] = 0x82), Err(Error::UnsupportedFlags(0x82)));
    assert_eq!(
        decode(&good, ClusterId::from_name("other")).map(|_| ()),
        Err(Error::OtherCluster(CLUSTER))
    );
    assert_eq!(with(&|b| b[8] = 11), Err(Error::UnknownKind(11)));
    assert_eq!(with(&|b| b[8] = 0), Err(Error::UnknownKind(0)));
    assert_eq!(with(&|b| b.truncate(b.len() - 1)), Err(Error::Malformed));
    assert_eq!(with(&|b| b.push(0)), Err(Error::TrailingBytes));
    // A count far larger than the bytes left (rumors, then digests).
    assert_eq!(with(&|b| b[16] = 0x7f), Err(Error::Malformed));
    assert_eq!(with(&|b| b[31] = 0x7f), Err(Error::Malformed));
    // A claim no writer makes (a confirmer in an "alive"): the first
    // digest's claim byte.
    assert_eq!(with(&|b| b[45] = 0x01), Err(Error::Malformed));
    // A sender address that does not parse (variant 7).
    assert_eq!(with(&|b| b[9] = 7), Err(Error::Malformed));
}

#[test]
fn invalid_utf8_user_key_is_malformed() {
    let (_, _, _, ack) = golden_messages().remove(1);
    let mut bytes = unhex(ack);
    let at = bytes.windows(4).position(|w| w == b"zone").unwrap();
    bytes[at] = 0xff;
    assert_eq!(decode(&bytes, CLUSTER).map(|_| ()), Err(Error::Malformed));
}

#[test]
fn an_empty_endpoint_delta_is_malformed_and_overlong_varints_decode() {
    // An ACK2 with no deltas, then patched by hand.
    let (_, header, _, _) = golden_messages().remove(2);
    let mut buf = [0u8; 64];
    let mut w = Ack2Writer::new(&mut buf, &header, &[]).unwrap();
    let endpoint = addr("10.0.0.3:7000");
    assert_eq!(
        w.push_delta(endpoint, Generation(7), Default::default(), []),
        0,
        "writers leave it out"
    );
    let len = w.finish();
    let mut bytes = buf[..len].to_vec();
    // Patch the list to hold one empty delta: count 1, endpoint, generation
    // 7, claim 0, no entries, no heartbeat.
    *bytes.last_mut().unwrap() = 1;
    bytes.extend_from_slice(&[0x00, 10, 0, 0, 3, 0xd8, 0x36, 7, 0, 0, 0]);
    assert_eq!(decode(&bytes, CLUSTER).map(|_| ()), Err(Error::Malformed));
    // With a heartbeat it is a delta (so the rejection above was for being
    // empty), and an overlong varint (0x87 0x00 for generation 7) decodes to
    // the same message as the minimal one.
    let n = bytes.len();
    bytes[n - 1] = 1;
    bytes.push(5);
    let minimal = decode(&bytes, CLUSTER).unwrap();
    let mut overlong = bytes.clone();
    overlong.splice(n - 4..n - 3, [0x87, 0x00]);
    assert_eq!(decode(&overlong, CLUSTER).unwrap().message, minimal.message);
}

#[test]
fn writers_refuse_buffers_without_room_for_an_empty_message() {
    let h = header("10.0.0.1:7000");
    // Header (9 + 7), the rumor list (3 while open, then 1), room for the
    // digest list count (3), the range (10), an empty summary (2) and an
    // empty filter (1); they then take 1 + 6 + 1 + 1.
    for n in 0..33 {
        let mut buf = std::vec![0u8; n];
        assert_eq!(
            SynWriter::new(&mut buf, &h, &[]).err(),
            Some(Error::BufferTooSmall)
        );
    }
    let mut buf = [0u8; 33];
    let w = SynWriter::new(&mut buf, &h, &[]).unwrap();
    let len = w.finish(RingRange::WHOLE);
    assert_eq!(len, 26);
    let d = decode(&buf[..len], CLUSTER).unwrap();
    assert!(matches!(d.message, Message::Syn(s) if s.digests.is_empty()));
}

#[test]
fn syn_is_filled_in_priority_order_up_to_the_limit() {
    let h = header("10.0.0.1:7000");
    let digests: Vec<GossipDigest> = (0..500u32)
        .map(|i| GossipDigest {
            endpoint: SocketAddr::new(IpAddr::from(i.to_be_bytes()), 7000),
            generation: Generation(1_700_000_000 + u64::from(i)),
            max_version: Version(u64::from(i) * 1000),
            claim: Default::default(),
        })
        .collect();
    let mut buf = [0u8; 1400];
    let mut w = SynWriter::new(&mut buf, &h, &[]).unwrap();
    for d in &digests {
        w.push(d);
    }
    let count = w.count();
    let len = w.finish(RingRange::WHOLE);
    assert!(len <= 1400);
    assert!(count > 50 && count < 500, "{count}");
    let decoded: Vec<GossipDigest> = match decode(&buf[..len], CLUSTER).unwrap().message {
        Message::Syn(s) => s.digests.collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(decoded, digests[..count]);
    // Full: what is left is less than one more digest (16 bytes here).
    assert!(1400 - len < 16 + COUNT_RESERVE + 10, "{len}");
}

#[test]
fn delta_is_cut_at_the_first_entry_that_does_not_fit() {
    let h = header("10.0.0.1:7000");
    let d = OwnedDelta {
        endpoint: addr("10.0.0.2:7000"),
        generation: 5,
        claim: Claim::default(),
        entries: (1..=20u64)
            .map(|v| {
                (
                    OwnedKey::User(std::format!("k{v}")),
                    v,
                    std::vec![b'x'; 100],
                )
            })
            .collect(),
        heartbeat: Some(21),
    };
    let mut buf = [0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &h, &[]).unwrap();
    let written = w.push_delta(d.endpoint, Generation(5), Default::default(), d.items());
    let len = w.finish();
    assert!(len <= 1400);
    assert!(written > 5 && written < 20, "{written}");
    let OwnedMessage::Ack2(got) = to_owned(&decode(&buf[..len], CLUSTER).unwrap()) else {
        panic!()
    };
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entries, d.entries[..written]);
    // The heartbeat follows the entries it is newer than, so it was cut too.
    assert_eq!(got[0].heartbeat, None);
}

#[test]
fn heartbeat_before_the_cut_is_kept() {
    let h = header("10.0.0.1:7000");
    let big = std::vec![b'x'; 1000];
    let items = [
        DeltaItem::State(
            StateKey::User("a"),
            VersionedValue {
                version: Version(1),
                value: b"1",
            },
        ),
        DeltaItem::Heartbeat(Version(2)),
        DeltaItem::State(
            StateKey::User("b"),
            VersionedValue {
                version: Version(3),
                value: &big,
            },
        ),
        DeltaItem::State(
            StateKey::User("c"),
            VersionedValue {
                version: Version(4),
                value: &big,
            },
        ),
    ];
    let mut buf = [0u8; 1400];
    let mut w = Ack2Writer::new(&mut buf, &h, &[]).unwrap();
    assert_eq!(
        w.push_delta(
            addr("10.0.0.2:7000"),
            Generation(1),
            Default::default(),
            items
        ),
        3
    );
    let len = w.finish();
    let OwnedMessage::Ack2(got) = to_owned(&decode(&buf[..len], CLUSTER).unwrap()) else {
        panic!()
    };
    assert_eq!(got[0].heartbeat, Some(2));
    assert_eq!(got[0].entries.len(), 2);
}

#[test]
fn deltas_that_do_not_fit_are_skipped_and_later_ones_tried() {
    let h = header("10.0.0.1:7000");
    let big = std::vec![b'x'; 2000];
    let mut buf = [0u8; 1400];
    let mut w = AckWriter::new(&mut buf, &h, &[]).unwrap();
    assert!(w.push_request(&digest("10.0.0.9:7000", 1, 0)));
    let huge = [DeltaItem::State(
        StateKey::User("a"),
        VersionedValue {
            version: Version(1),
            value: &big,
        },
    )];
    assert_eq!(
        w.push_delta(
            addr("10.0.0.2:7000"),
            Generation(1),
            Default::default(),
            huge
        ),
        0
    );
    // Requests are closed once deltas started.
    assert!(!w.push_request(&digest("10.0.0.8:7000", 1, 0)));
    let small = [DeltaItem::Heartbeat(Version(9))];
    assert_eq!(
        w.push_delta(
            addr("10.0.0.3:7000"),
            Generation(1),
            Default::default(),
            small
        ),
        1
    );
    assert_eq!(
        w.push_delta(addr("10.0.0.4:7000"), Generation(1), Default::default(), []),
        0
    );
    assert_eq!((w.requests(), w.deltas()), (1, 1));
    let len = w.finish();
    let OwnedMessage::Ack(reqs, deltas) = to_owned(&decode(&buf[..len], CLUSTER).unwrap()) else {
        panic!()
    };
    assert_eq!(reqs, [digest("10.0.0.9:7000", 1, 0)]);
    assert_eq!(deltas.len(), 1);
    assert_eq!(deltas[0].endpoint, addr("10.0.0.3:7000"));
    assert_eq!(deltas[0].heartbeat, Some(9));
}

#[test]
fn ack_keeps_room_for_deltas_after_many_requests() {
    let h = header("10.0.0.1:7000");
    let mut buf = [0u8; 200];
    let mut w = AckWriter::new(&mut buf, &h, &[]).unwrap();
    let mut pushed = 0;
    for i in 0..100u8 {
        if w.push_request(&digest(&std::format!("10.0.1.{i}:7000"), 1, 0)) {
            pushed += 1;
        }
    }
    assert!(pushed > 0 && pushed < 100);
    let len = w.finish();
    assert!(len <= 200);
    let OwnedMessage::Ack(reqs, deltas) = to_owned(&decode(&buf[..len], CLUSTER).unwrap()) else {
        panic!()
    };
    assert_eq!((reqs.len(), deltas.len()), (pushed, 0));
}

#[test]
fn a_syn_carries_its_summary_and_a_wrong_length_is_malformed() {
    let h = header("10.0.0.1:7000");
    let mut summary = Summary::default();
    for i in 0..500u32 {
        summary.add(i.wrapping_mul(0x0101_0101));
    }
    let mut buf = [0u8; 1400];
    let w = SynWriter::with_summary(&mut buf, &h, &[], &summary).unwrap();
    let len = w.finish(RingRange::WHOLE);
    let Message::Syn(s) = decode(&buf[..len], CLUSTER).unwrap().message else {
        panic!("not a SYN");
    };
    assert_eq!(s.summary.map(Summary::from_wire), Some(summary));
    // The summary comes before the (empty) filter, the last byte:
    // `0x80 0x01` (128) and its bytes. One byte fewer is malformed,
    // whatever the length says.
    assert_eq!(buf[len - 1], 0);
    let mut short = buf[..len - 1].to_vec();
    short.truncate(len - 2);
    short.push(0);
    let at = len - 1 - SUMMARY_BYTES - 2;
    assert_eq!(&short[at..at + 2], &[0x80, 0x01]);
    short[at] = 0xff;
    short[at + 1] = 0x00;
    assert_eq!(decode(&short, CLUSTER).map(|_| ()), Err(Error::Malformed));
}

#[test]
fn summaries_count_and_fingerprint_each_segment() {
    let mut a = Summary::default();
    let mut b = Summary::default();
    let positions: Vec<u32> = (0..300u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
    for &p in &positions {
        a.add(p);
        b.add(p);
    }
    assert_eq!(a, b);
    assert_eq!(a.first_difference(&b, 0), None);
    // One missing shows in its segment, from wherever the search starts.
    let gone = positions[17];
    b.remove(gone);
    let segment = Summary::segment(gone);
    for from in [0, segment, segment + 1, SUMMARY_SEGMENTS - 1] {
        assert_eq!(a.first_difference(&b, from), Some(segment));
    }
    // Two missing from one segment show too (the count differs by two).
    let twin = positions
        .iter()
        .copied()
        .find(|&p| p != gone && Summary::segment(p) == segment)
        .unwrap();
    b.remove(twin);
    assert_eq!(a.first_difference(&b, 0), Some(segment));
    // Added back, the summaries agree again; wire form round trips.
    b.add(gone);
    b.add(twin);
    assert_eq!(a, b);
    assert_eq!(Summary::from_wire(&a.to_bytes()), a);
    assert_eq!(Summary::segment_start(segment) >> 26, segment as u32);
}

#[test]
fn a_whole_delta_goes_whole_or_not_at_all() {
    let h = header("10.0.0.1:7000");
    let value = [7u8; 100];
    let items = |n: u64| {
        (1..=n)
            .map(|v| {
                DeltaItem::State(
                    StateKey::Unknown(v as u16 + 100),
                    VersionedValue {
                        version: Version(v),
                        value: &value,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let mut buf = [0u8; 400];
    let mut w = Ack2Writer::new(&mut buf, &h, &[]).unwrap();
    // Five states of 100 bytes do not fit 400: none is written...
    assert!(!w.push_whole_delta(
        addr("10.0.0.2:7000"),
        Generation(1),
        Claim::default(),
        items(5),
        5
    ));
    assert_eq!(w.deltas(), 0);
    // ...where a plain push writes what fits.
    assert!(
        w.push_delta(
            addr("10.0.0.2:7000"),
            Generation(1),
            Claim::default(),
            items(5)
        ) > 0
    );
    // Two fit whole.
    let mut w = Ack2Writer::new(&mut buf, &h, &[]).unwrap();
    assert!(w.push_whole_delta(
        addr("10.0.0.2:7000"),
        Generation(1),
        Claim::default(),
        items(2),
        2
    ));
    let len = w.finish();
    let Message::Ack2(a) = decode(&buf[..len], CLUSTER).unwrap().message else {
        panic!("not an ACK2");
    };
    assert_eq!(a.deltas.map(|d| d.delta.entries.len()).sum::<usize>(), 2);
}

#[test]
fn a_filter_holds_what_was_inserted_and_few_others() {
    let len = MAX_FILTER_BYTES;
    let most = len * 8 / FILTER_BITS_PER_ENDPOINT;
    let positions: Vec<u32> = (0..2 * most as u32)
        .map(|i| i.wrapping_mul(0x9e37_79b1))
        .collect();
    let (inside, outside) = positions.split_at(most);
    for salt in [0, 1, 0xdead_beef] {
        let mut bits = std::vec![0u8; len];
        for &p in inside {
            filter_insert(&mut bits, salt, p);
        }
        let f = Filter::new(salt, &bits);
        assert!(inside.iter().all(|&p| f.contains(p)), "salt {salt}");
        // About 1.2 % false positives at 10 bits an endpoint and 4 hashes.
        let false_positives = outside.iter().filter(|&&p| f.contains(p)).count();
        assert!(
            false_positives * 100 < outside.len() * 3,
            "salt {salt}: {false_positives}"
        );
        assert!(
            false_positives > 0,
            "salt {salt}: a filter that holds nothing else"
        );
    }
    // Another salt has other false positives.
    let fp = |salt: u32| -> Vec<u32> {
        let mut bits = std::vec![0u8; len];
        for &p in inside {
            filter_insert(&mut bits, salt, p);
        }
        let f = Filter::new(salt, &bits);
        outside.iter().copied().filter(|&p| f.contains(p)).collect()
    };
    let (a, b) = (fp(1), fp(2));
    assert!(a.iter().filter(|p| b.contains(p)).count() * 4 < a.len());
    // An empty filter holds nothing.
    let empty = std::vec![0u8; 64];
    assert!(
        !positions
            .iter()
            .any(|&p| Filter::new(7, &empty).contains(p))
    );
}

#[test]
fn a_syn_carries_its_filter_and_a_bad_one_is_malformed() {
    let h = header("10.0.0.1:7000");
    let mut buf = [0u8; 1400];
    let mut w = SynWriter::with_summary(&mut buf, &h, &[], &Summary::default()).unwrap();
    assert!(w.push(&digest("10.0.0.1:7000", 1_700_000_000, 3)));
    let len = w.reserve_filter(MAX_FILTER_BYTES);
    assert_eq!(len, MAX_FILTER_BYTES);
    let mut bits = std::vec![0u8; len];
    filter_insert(&mut bits, 42, 12345);
    let range = RingRange { start: 10, end: 99 };
    let n = w.finish_with_filter(range, Some(Filter::new(42, &bits)));
    assert!(n <= 1400);
    let Message::Syn(s) = decode(&buf[..n], CLUSTER).unwrap().message else {
        panic!("not a SYN");
    };
    assert_eq!(s.range, range);
    assert_eq!(s.digests.len(), 1);
    let f = s.filter.unwrap();
    assert_eq!((f.salt(), f.bits()), (42, &bits[..]));
    assert!(f.contains(12345));
    // A short buffer gets a shorter filter, a multiple of 8 bytes.
    let mut small = [0u8; 200];
    let mut w = SynWriter::new(&mut small, &h, &[]).unwrap();
    let room = w.reserve_filter(MAX_FILTER_BYTES);
    assert!(room > 0 && room < 200 && room.is_multiple_of(8));
    // The filter is the last field: its length, the salt and the bits.
    // Lengths that are not 4 + a multiple of 8 (up to 1,024) are malformed.
    let body_end = n - (2 + 4 + len);
    for bad in [1usize, 4, 4 + 7, 4 + 12, 4 + MAX_FILTER_BYTES + 8] {
        let mut datagram = buf[..body_end].to_vec();
        let mut cur = std::vec![0u8; 4];
        let mut c = codec::Cursor::new(&mut cur);
        c.put_varint(bad as u64).unwrap();
        let l = c.pos();
        datagram.extend_from_slice(&cur[..l]);
        datagram.extend(std::iter::repeat_n(0xA5, bad));
        assert_eq!(
            decode(&datagram, CLUSTER).map(|_| ()),
            Err(Error::Malformed),
            "filter of {bad} bytes"
        );
    }
}

mod properties;

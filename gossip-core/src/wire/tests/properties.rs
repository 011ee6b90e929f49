//! Properties over arbitrary messages: decoding what was encoded gives it
//! back, arbitrary and mutated bytes never panic, and writers fill any
//! buffer size without writing past it.

use super::*;

fn arbitrary_addr(g: &mut Gen) -> SocketAddr {
    if bool::arbitrary(g) {
        SocketAddr::new(
            IpAddr::from(u32::arbitrary(g).to_be_bytes()),
            u16::arbitrary(g),
        )
    } else {
        // flowinfo and scope id are not sent.
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(u128::arbitrary(g)),
            u16::arbitrary(g),
            0,
            0,
        ))
    }
}

/// A generation or version: 32-bit, edges included.
fn arbitrary_u64(g: &mut Gen) -> u64 {
    match u8::arbitrary(g) % 3 {
        0 => u64::from(u8::arbitrary(g)),
        1 => u64::from(u32::arbitrary(g)),
        _ => u64::from(u32::MAX - u32::from(u8::arbitrary(g))),
    }
}

fn arbitrary_claim(g: &mut Gen) -> Claim {
    let status = *g
        .choose(&[Status::Alive, Status::Suspect, Status::Down, Status::Left])
        .unwrap_or(&Status::Alive);
    Claim {
        incarnation: if bool::arbitrary(g) {
            u32::arbitrary(g)
        } else {
            u32::from(u8::arbitrary(g) % 4)
        },
        status,
        confirmers: if status == Status::Suspect {
            u8::arbitrary(g)
        } else {
            0
        },
    }
}

fn arbitrary_digests(g: &mut Gen) -> Vec<GossipDigest> {
    (0..usize::arbitrary(g) % 12)
        .map(|_| GossipDigest {
            endpoint: arbitrary_addr(g),
            generation: Generation(arbitrary_u64(g)),
            max_version: Version(arbitrary_u64(g)),
            claim: arbitrary_claim(g),
        })
        .collect()
}

fn arbitrary_rumors(g: &mut Gen) -> Vec<Rumor> {
    (0..usize::arbitrary(g) % 5)
        .map(|_| Rumor {
            endpoint: arbitrary_addr(g),
            generation: Generation(arbitrary_u64(g)),
            claim: arbitrary_claim(g),
        })
        .collect()
}

fn arbitrary_delta(g: &mut Gen) -> OwnedDelta {
    let entries = (0..usize::arbitrary(g) % 6)
        .map(|_| {
            let key = match u8::arbitrary(g) % 3 {
                0 => OwnedKey::Known(
                    *g.choose(ApplicationState::ALL)
                        .unwrap_or(&ApplicationState::Status),
                ),
                1 => OwnedKey::User(String::arbitrary(g).chars().take(20).collect()),
                _ => OwnedKey::Unknown(17 + u16::arbitrary(g) % (u16::MAX - 17)),
            };
            let value: Vec<u8> = Vec::arbitrary(g).into_iter().take(40).collect();
            (key, arbitrary_u64(g), value)
        })
        .collect();
    OwnedDelta {
        endpoint: arbitrary_addr(g),
        generation: arbitrary_u64(g),
        claim: arbitrary_claim(g),
        entries,
        heartbeat: bool::arbitrary(g).then(|| arbitrary_u64(g)),
    }
}

fn arbitrary_deltas(g: &mut Gen) -> Vec<OwnedDelta> {
    (0..usize::arbitrary(g) % 5)
        .map(|_| arbitrary_delta(g))
        .filter(|d| !d.entries.is_empty() || d.heartbeat.is_some())
        .collect()
}

impl Arbitrary for OwnedMessage {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 6 {
            0 => OwnedMessage::Syn(
                arbitrary_digests(g),
                RingRange {
                    start: u32::arbitrary(g),
                    end: u32::arbitrary(g),
                },
                bool::arbitrary(g).then(|| {
                    let mut s = Summary::default();
                    for x in s.0.iter_mut() {
                        *x = u16::arbitrary(g);
                    }
                    s
                }),
                bool::arbitrary(g).then(|| {
                    let len = 8 * (1 + usize::from(u8::arbitrary(g)) % 32);
                    (
                        u32::arbitrary(g),
                        (0..len).map(|_| u8::arbitrary(g)).collect(),
                    )
                }),
            ),
            1 => OwnedMessage::Ack(arbitrary_digests(g), arbitrary_deltas(g)),
            2 => OwnedMessage::Ack2(arbitrary_deltas(g)),
            3 => OwnedMessage::Shutdown(arbitrary_delta(g)),
            4 => OwnedMessage::CatchUp(arbitrary_deltas(g), u32::arbitrary(g), bool::arbitrary(g)),
            _ => OwnedMessage::Probe(match u8::arbitrary(g) % 5 {
                0 => Probe::Ping {
                    seq: u32::arbitrary(g),
                },
                1 => Probe::PingReq {
                    seq: u32::arbitrary(g),
                    target: arbitrary_addr(g),
                },
                2 => Probe::PingAck {
                    seq: u32::arbitrary(g),
                },
                3 => Probe::Nack {
                    seq: u32::arbitrary(g),
                },
                _ => Probe::News,
            }),
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    header: Header,
    rumors: Vec<Rumor>,
    msg: OwnedMessage,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        let header = Header {
            cluster: ClusterId(u32::arbitrary(g)),
            sender: arbitrary_addr(g),
        };
        let mut msg = OwnedMessage::arbitrary(g);
        if let OwnedMessage::Shutdown(d) = &mut msg {
            d.endpoint = header.sender;
            d.claim = Claim::default();
        }
        Case {
            header,
            rumors: arbitrary_rumors(g),
            msg,
        }
    }
}

#[test]
fn decode_of_encode_is_identity() {
    fn prop(case: Case) -> bool {
        let mut buf = std::vec![0u8; 65_536];
        let len = encode_with(&case.header, &case.rumors, &case.msg, &mut buf).unwrap();
        let datagram = decode(&buf[..len], case.header.cluster).unwrap();
        datagram.header == case.header
            && datagram.rumors.collect::<Vec<_>>() == case.rumors
            && to_owned(&datagram) == case.msg
    }
    QuickCheck::new()
        .tests(3000)
        .quickcheck(prop as fn(Case) -> bool);
}

#[test]
fn arbitrary_bytes_never_panic() {
    fn prop(bytes: Vec<u8>, cluster: u32) -> bool {
        // Also with a valid prefix, so the body parser is reached.
        let mut framed = std::vec![b'G', b'S', PROTOCOL_VERSION, 0];
        framed.extend_from_slice(&cluster.to_le_bytes());
        framed.extend_from_slice(&bytes);
        for input in [&bytes[..], &framed[..]] {
            if let Ok(d) = decode(input, ClusterId(cluster)) {
                // Whatever decodes can be walked in full.
                let _ = to_owned(&d);
            }
        }
        true
    }
    QuickCheck::new()
        .tests(5000)
        .quickcheck(prop as fn(Vec<u8>, u32) -> bool);
}

#[test]
fn mutated_datagrams_never_panic_and_reencode_identically() {
    fn prop(case: Case, flips: Vec<(u16, u8)>) -> TestResult {
        let mut buf = std::vec![0u8; 65_536];
        let len = encode_with(&case.header, &case.rumors, &case.msg, &mut buf).unwrap();
        let mut bytes = buf[..len].to_vec();
        if bytes.is_empty() {
            return TestResult::discard();
        }
        for (at, val) in flips {
            let i = usize::from(at) % bytes.len();
            bytes[i] = val;
        }
        if let Ok(d) = decode(&bytes, case.header.cluster) {
            // Whatever decodes re-encodes to a datagram that decodes the same.
            let msg = to_owned(&d);
            let rumors: Vec<Rumor> = d.rumors.collect();
            let mut again = std::vec![0u8; 65_536];
            let n = encode_with(&d.header, &rumors, &msg, &mut again).unwrap();
            let d2 = decode(&again[..n], case.header.cluster).unwrap();
            return TestResult::from_bool(
                to_owned(&d2) == msg && d2.rumors.collect::<Vec<_>>() == rumors,
            );
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(3000)
        .quickcheck(prop as fn(Case, Vec<(u16, u8)>) -> TestResult);
}

/// Whether `sub` is `full` with some elements left out, order kept.
fn is_subsequence<T: PartialEq>(sub: &[T], full: &[T]) -> bool {
    let mut it = full.iter();
    sub.iter().all(|x| it.any(|y| y == x))
}

/// `got` holds a prefix of `want`'s entries, and the heartbeat only if every
/// entry made it (the writer got entries first, heartbeat last).
fn is_cut_of(got: &OwnedDelta, want: &OwnedDelta) -> bool {
    got.endpoint == want.endpoint
        && got.generation == want.generation
        && got.claim == want.claim
        && want.entries.starts_with(&got.entries)
        && (got.heartbeat.is_none()
            || (got.heartbeat == want.heartbeat && got.entries.len() == want.entries.len()))
}

fn is_fill_of(got: &OwnedMessage, want: &OwnedMessage) -> bool {
    let deltas_fit = |got: &[OwnedDelta], want: &[OwnedDelta]| {
        let mut it = want.iter();
        got.iter().all(|g| it.any(|w| is_cut_of(g, w)))
    };
    match (got, want) {
        (OwnedMessage::Syn(g, gc, gs, gf), OwnedMessage::Syn(w, wc, ws, wf)) => {
            gc == wc && gs == ws && (gf == wf || gf.is_none()) && is_subsequence(g, w)
        }
        (OwnedMessage::Ack(gr, gd), OwnedMessage::Ack(wr, wd)) => {
            is_subsequence(gr, wr) && deltas_fit(gd, wd)
        }
        (OwnedMessage::Ack2(g), OwnedMessage::Ack2(w)) => deltas_fit(g, w),
        (OwnedMessage::CatchUp(g, gn, gm), OwnedMessage::CatchUp(w, wn, wm)) => {
            gn == wn && gm == wm && deltas_fit(g, w)
        }
        (OwnedMessage::Shutdown(g), OwnedMessage::Shutdown(w)) => is_cut_of(g, w),
        (OwnedMessage::Probe(g), OwnedMessage::Probe(w)) => g == w,
        _ => false,
    }
}

fn check_buffer_size(case: &Case, size: usize) -> bool {
    const GUARD: usize = 64;
    let mut buf = std::vec![0xEEu8; size + GUARD];
    let res = encode_with(&case.header, &case.rumors, &case.msg, &mut buf[..size]);
    if buf[size..].iter().any(|b| *b != 0xEE) {
        return false;
    }
    // Rumors are all written or the message is refused.
    let rumors: usize = case.rumors.iter().map(rumor_len).sum::<usize>() + COUNT_RESERVE;
    match res {
        // The largest empty message: a SYN with a summary (a list count,
        // the range and the summary), else a SHUTDOWN or PING-REQ with an
        // IPv6 sender, its rumors, a 10-byte generation, an entry count and
        // room for the heartbeat.
        Err(Error::BufferTooSmall) => {
            let body = match &case.msg {
                OwnedMessage::Syn(_, _, Some(_), _) => COUNT_RESERVE + 10 + 3 + SUMMARY_BYTES,
                _ => 10 + COUNT_RESERVE + 11,
            };
            size < MAX_HEADER_LEN + rumors + body
        }
        Err(_) => false,
        Ok(len) => {
            len <= size
                && decode(&buf[..len], case.header.cluster).is_ok_and(|d| {
                    is_fill_of(&to_owned(&d), &case.msg)
                        && d.rumors.collect::<Vec<_>>() == case.rumors
                })
        }
    }
}

#[test]
fn encoding_never_writes_past_the_buffer() {
    fn prop(case: Case, size: u16, full: bool) -> bool {
        let size = if full { 65_536 } else { usize::from(size) };
        check_buffer_size(&case, size) && check_buffer_size(&case, size % 300)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Case, u16, bool) -> bool);
}

#[test]
fn every_small_buffer_size_is_handled() {
    let mut g = Gen::new(30);
    for _ in 0..40 {
        let case = Case::arbitrary(&mut g);
        for size in 0..=600 {
            assert!(check_buffer_size(&case, size), "{case:?} at {size}");
        }
    }
}

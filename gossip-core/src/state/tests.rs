extern crate std;

use std::string::String;
use std::vec::Vec;

use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::*;
use crate::wire::codec::{Cursor, put_entry};

type State = EndpointState<Vec<u8>>;
type Entry = (OwnedKey, u64, Vec<u8>);

const NOW: Generation = Generation(1_000_000);

/// An owned application state key, for building deltas in tests.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OwnedKey {
    Known(ApplicationState),
    User(String),
    Unknown(u16),
}

impl OwnedKey {
    pub(crate) fn borrow(&self) -> StateKey<'_> {
        match self {
            OwnedKey::Known(s) => StateKey::Known(*s),
            OwnedKey::User(name) => StateKey::User(name),
            OwnedKey::Unknown(code) => StateKey::Unknown(*code),
        }
    }
}

/// Packs entries in wire encoding.
pub(crate) fn pack(entries: &[(OwnedKey, u64, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::vec![0u8; 1 << 20];
    let mut cur = Cursor::new(&mut buf);
    for (key, version, value) in entries {
        let vv = VersionedValue {
            version: Version(*version),
            value,
        };
        put_entry(&mut cur, &key.borrow(), &vv).unwrap();
    }
    let len = cur.pos();
    buf.truncate(len);
    buf
}

fn delta<'a>(generation: u64, heartbeat: Option<u64>, packed: &'a [u8], count: usize) -> Delta<'a> {
    Delta {
        generation: Generation(generation),
        heartbeat: heartbeat.map(Version),
        entries: Entries::from_validated(packed, count as u32),
    }
}

fn apply(
    state: &mut State,
    generation: u64,
    heartbeat: Option<u64>,
    entries: &[(OwnedKey, u64, Vec<u8>)],
) -> Result<Applied, MergeError> {
    let packed = pack(entries);
    state.apply(
        &delta(generation, heartbeat, &packed, entries.len()),
        &Limits::default(),
        NOW,
        |_, _| {},
    )
}

fn status() -> OwnedKey {
    OwnedKey::Known(ApplicationState::Status)
}

fn user(name: &str) -> OwnedKey {
    OwnedKey::User(name.into())
}

#[test]
fn local_writes_share_one_version_counter() {
    let limits = Limits::default();
    let mut s = State::new(Generation(7));
    assert_eq!(s.max_version(), Version(0));
    assert_eq!(s.beat().unwrap(), Version(1));
    let v = s
        .set_local(StateKey::parse("STATUS"), b"NORMAL", &limits)
        .unwrap();
    assert_eq!(v, Version(2));
    assert_eq!(s.beat().unwrap(), Version(3));
    let v = s
        .set_local(StateKey::parse("zone"), b"eu", &limits)
        .unwrap();
    assert_eq!(v, Version(4));
    let v = s
        .set_local(StateKey::parse("STATUS"), b"LEAVING", &limits)
        .unwrap();
    assert_eq!(v, Version(5));
    assert_eq!(s.len(), 2);
    assert_eq!(s.max_version(), Version(5));
    assert_eq!(s.heartbeat().version, Version(3));
    let status = s.get(&ApplicationState::Status.into()).unwrap();
    assert_eq!(
        (status.version, status.as_str()),
        (Version(5), Some("LEAVING"))
    );
    // Entries come in ascending version order.
    let versions: Vec<u64> = s.entries().map(|(_, v)| v.version.0).collect();
    assert_eq!(versions, [4, 5]);
}

#[test]
fn items_above_interleaves_heartbeat_in_version_order() {
    let limits = Limits::default();
    let mut s = State::new(Generation(1));
    s.set_local(StateKey::User("a"), b"1", &limits).unwrap(); // 1
    s.beat().unwrap(); // 2
    s.set_local(StateKey::User("b"), b"2", &limits).unwrap(); // 3
    let versions = |s: &State, above: u64| -> Vec<(bool, u64)> {
        s.items_above(Version(above))
            .map(|i| (matches!(i, DeltaItem::Heartbeat(_)), i.version().0))
            .collect()
    };
    assert_eq!(versions(&s, 0), [(false, 1), (true, 2), (false, 3)]);
    assert_eq!(versions(&s, 1), [(true, 2), (false, 3)]);
    assert_eq!(versions(&s, 2), [(false, 3)]);
    assert_eq!(versions(&s, 3), []);
    s.beat().unwrap(); // 4
    assert_eq!(versions(&s, 3), [(true, 4)]);
}

#[test]
fn higher_version_wins_per_key() {
    let mut s = State::new(Generation(5));
    apply(
        &mut s,
        5,
        Some(3),
        &[
            (status(), 2, b"JOINING".to_vec()),
            (user("x"), 3, b"1".to_vec()),
        ],
    )
    .unwrap();
    let mut changed = Vec::new();
    let packed = pack(&[
        (status(), 1, b"OLD".to_vec()),
        (user("x"), 9, b"2".to_vec()),
    ]);
    let applied = s
        .apply(
            &delta(5, Some(2), &packed, 2),
            &Limits::default(),
            NOW,
            |k, v| changed.push((std::format!("{k}"), v.version.0)),
        )
        .unwrap();
    assert_eq!(changed, [(String::from("x"), 9)]);
    assert_eq!(
        applied,
        Applied {
            stale: false,
            replaced: false,
            heartbeat_advanced: false,
            changed: 1
        }
    );
    assert_eq!(s.get(&status().borrow()).unwrap().value, b"JOINING");
    assert_eq!(s.get(&user("x").borrow()).unwrap().value, b"2");
    assert_eq!(s.heartbeat().version, Version(3));
    assert_eq!(s.max_version(), Version(9));
}

#[test]
fn newer_generation_replaces_wholesale_and_older_is_stale() {
    let mut s = State::new(Generation(5));
    apply(
        &mut s,
        5,
        Some(100),
        &[
            (status(), 50, b"NORMAL".to_vec()),
            (user("x"), 60, b"1".to_vec()),
        ],
    )
    .unwrap();
    let applied = apply(&mut s, 6, Some(2), &[(status(), 1, b"JOINING".to_vec())]).unwrap();
    assert!(applied.replaced && applied.heartbeat_advanced);
    assert_eq!(s.generation(), Generation(6));
    assert_eq!(s.heartbeat().version, Version(2));
    assert_eq!(s.len(), 1);
    assert!(s.get(&user("x").borrow()).is_none());
    assert_eq!(s.max_version(), Version(2));

    let before = s.clone();
    let applied = apply(&mut s, 5, Some(1000), &[(user("y"), 999, b"z".to_vec())]).unwrap();
    assert!(applied.stale);
    assert_eq!(s, before);
}

#[test]
fn bogus_generation_is_rejected() {
    let mut s = State::new(Generation(5));
    let before = s.clone();
    let far = NOW.0 + Limits::ONE_YEAR + 1;
    assert_eq!(
        apply(&mut s, far, Some(1), &[]),
        Err(MergeError::BogusGeneration)
    );
    assert_eq!(s, before);
    assert!(apply(&mut s, far - 1, Some(1), &[]).is_ok());
}

#[test]
fn limits_refuse_and_leave_state_unchanged() {
    let limits = Limits {
        max_keys_per_endpoint: 2,
        max_key_len: 4,
        max_value_len: 8,
        ..Limits::default()
    };
    let mut s = State::new(Generation(1));
    s.set_local(StateKey::User("a"), b"1", &limits).unwrap();
    let before = s.clone();
    let cases: [(&[Entry], MergeError); 5] = [
        (
            &[
                (user("b"), 10, b"x".to_vec()),
                (user("c"), 11, b"y".to_vec()),
            ],
            MergeError::TooManyKeys,
        ),
        (&[(user("toolong"), 10, b"x".to_vec())], MergeError::BadKey),
        (&[(user(""), 10, b"x".to_vec())], MergeError::BadKey),
        (
            &[(user("b"), 10, b"123456789".to_vec())],
            MergeError::ValueTooLong,
        ),
        (
            &[
                (user("b"), 10, b"x".to_vec()),
                (user("b"), 11, b"y".to_vec()),
            ],
            MergeError::DuplicateKey,
        ),
    ];
    for (entries, err) in cases {
        let packed = pack(entries);
        let res = s.apply(
            &delta(1, Some(50), &packed, entries.len()),
            &limits,
            NOW,
            |_, _| {},
        );
        assert_eq!(res, Err(err), "{entries:?}");
        assert_eq!(s, before);
    }
    assert_eq!(
        s.set_local(StateKey::User("c"), b"123456789", &limits),
        Err(MergeError::ValueTooLong)
    );
    s.set_local(StateKey::User("b"), b"2", &limits).unwrap();
    assert_eq!(
        s.set_local(StateKey::User("c"), b"3", &limits),
        Err(MergeError::TooManyKeys)
    );
    // Updating an existing key at the limit is fine.
    s.set_local(StateKey::User("b"), b"22", &limits).unwrap();
}

#[test]
fn fixed_capacity_refuses_and_leaves_state_unchanged() {
    let limits = Limits::default();
    let mut s: EndpointState<heapless::Vec<u8, 16>> = EndpointState::new(Generation(1));
    s.set_local(StateKey::User("a"), b"12345", &limits).unwrap(); // 1 + 2 + 1 + 6 = 10 bytes
    let before = s.clone();
    let packed = pack(&[(user("b"), 10, b"123".to_vec())]); // 8 bytes
    let res = s.apply(&delta(1, Some(50), &packed, 1), &limits, NOW, |_, _| {});
    assert_eq!(res, Err(MergeError::Capacity));
    assert_eq!(s, before);
    assert_eq!(
        s.set_local(StateKey::User("b"), b"123", &limits),
        Err(MergeError::Capacity)
    );
    assert_eq!(s, before);
    // Replacing the entry with a smaller one fits.
    let packed = pack(&[(user("a"), 10, b"1".to_vec())]);
    s.apply(&delta(1, Some(50), &packed, 1), &limits, NOW, |_, _| {})
        .unwrap();
    assert_eq!(s.stored_bytes(), 6);
}

#[test]
fn version_counter_exhausts_after_shutdown() {
    let mut s = State::new(Generation(1));
    s.set_local(
        StateKey::Known(ApplicationState::Status),
        b"shutdown,true",
        &Limits::default(),
    )
    .unwrap();
    s.force_highest_heartbeat();
    assert_eq!(s.heartbeat().version, Version::MAX);
    assert_eq!(s.beat(), Err(MergeError::VersionExhausted));
    assert_eq!(
        s.set_local(
            StateKey::Known(ApplicationState::Status),
            b"NORMAL",
            &Limits::default()
        ),
        Err(MergeError::VersionExhausted)
    );
}

#[test]
fn same_version_tie_breaks_on_value_bytes() {
    let mut a = State::new(Generation(1));
    apply(&mut a, 1, None, &[(user("k"), 5, b"apple".to_vec())]).unwrap();
    let mut b = State::new(Generation(1));
    apply(&mut b, 1, None, &[(user("k"), 5, b"pear".to_vec())]).unwrap();
    let mut ab = a.clone();
    ab.merge(&b, &Limits::default(), NOW).unwrap();
    let mut ba = b.clone();
    ba.merge(&a, &Limits::default(), NOW).unwrap();
    assert_eq!(ab, ba);
    assert_eq!(ab.get(&user("k").borrow()).unwrap().value, b"pear");
}

#[test]
fn stored_and_fixed_storage_behave_alike() {
    let limits = Limits::default();
    let mut grow = State::new(Generation(3));
    let mut fixed: EndpointState<heapless::Vec<u8, 512>> = EndpointState::new(Generation(3));
    for (i, name) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        let value = std::format!("value-{i}");
        grow.set_local(StateKey::User(name), value.as_bytes(), &limits)
            .unwrap();
        fixed
            .set_local(StateKey::User(name), value.as_bytes(), &limits)
            .unwrap();
        grow.beat().unwrap();
        fixed.beat().unwrap();
    }
    assert_eq!(grow, fixed);
    assert_eq!(grow.stored_bytes(), fixed.stored_bytes());
    let a: Vec<_> = grow.entries().collect();
    let b: Vec<_> = fixed.entries().collect();
    assert_eq!(a, b);
}

/// A replica of one endpoint's state, for the lattice laws.
#[derive(Clone, Debug)]
struct Replica(State);

impl Arbitrary for Replica {
    fn arbitrary(g: &mut Gen) -> Self {
        let keys = [
            status(),
            OwnedKey::Known(ApplicationState::Load),
            user("a"),
            user("bb"),
            OwnedKey::Unknown(900),
        ];
        let generation = u64::from(u8::arbitrary(g) % 3);
        let heartbeat = u64::from(u8::arbitrary(g) % 20);
        let mut entries: Vec<(OwnedKey, u64, Vec<u8>)> = Vec::new();
        for key in keys {
            if bool::arbitrary(g) {
                let version = u64::from(u8::arbitrary(g) % 19) + 1;
                let value = std::vec![u8::arbitrary(g) % 3; usize::from(u8::arbitrary(g) % 3)];
                entries.push((key, version, value));
            }
        }
        entries.sort_by_key(|(_, v, _)| *v);
        let mut s = State::new(Generation(generation));
        let hb = bool::arbitrary(g).then_some(heartbeat);
        apply(&mut s, generation, hb, &entries).unwrap();
        Replica(s)
    }
}

fn join(a: &State, b: &State) -> State {
    let mut out = a.clone();
    out.merge(b, &Limits::default(), NOW).unwrap();
    out
}

#[test]
fn merge_is_commutative() {
    fn prop(a: Replica, b: Replica) -> bool {
        join(&a.0, &b.0) == join(&b.0, &a.0)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Replica, Replica) -> bool);
}

#[test]
fn merge_is_associative() {
    fn prop(a: Replica, b: Replica, c: Replica) -> bool {
        join(&join(&a.0, &b.0), &c.0) == join(&a.0, &join(&b.0, &c.0))
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Replica, Replica, Replica) -> bool);
}

#[test]
fn merge_is_idempotent() {
    fn prop(a: Replica, b: Replica) -> bool {
        let ab = join(&a.0, &b.0);
        join(&a.0, &a.0) == a.0 && join(&ab, &b.0) == ab && join(&ab, &a.0) == ab
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Replica, Replica) -> bool);
}

#[test]
fn partial_deltas_in_version_order_converge() {
    // Shipping `items_above(v)` in any prefix-sized pieces, in order, ends at
    // the full state: what truncated datagrams rely on.
    fn prop(a: Replica, cut: u8) -> bool {
        let src = &a.0;
        let mut dst = State::new(src.generation());
        let items: Vec<DeltaItem<'_>> = src.items_above(Version(0)).collect();
        if src.item_count() != items.len() {
            return false;
        }
        let step = usize::from(cut % 4) + 1;
        for chunk in items.chunks(step) {
            let entries: Vec<(OwnedKey, u64, Vec<u8>)> = chunk
                .iter()
                .filter_map(|i| match i {
                    DeltaItem::State(k, v) => Some((owned(k), v.version.0, v.value.to_vec())),
                    DeltaItem::Heartbeat(_) => None,
                })
                .collect();
            let hb = chunk.iter().find_map(|i| match i {
                DeltaItem::Heartbeat(v) => Some(v.0),
                DeltaItem::State(..) => None,
            });
            apply(&mut dst, src.generation().0, hb, &entries).unwrap();
            // What the receiver advertises never runs ahead of what it holds.
            let shipped_max = chunk.iter().map(|i| i.version()).max().unwrap();
            if dst.max_version() != shipped_max {
                return false;
            }
        }
        dst == *src
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Replica, u8) -> bool);
}

fn owned(key: &StateKey<'_>) -> OwnedKey {
    match key {
        StateKey::Known(s) => OwnedKey::Known(*s),
        StateKey::User(n) => OwnedKey::User((*n).into()),
        StateKey::Unknown(c) => OwnedKey::Unknown(*c),
    }
}

#[test]
fn state_keys_parse_and_display() {
    assert_eq!(
        StateKey::parse("STATUS"),
        StateKey::Known(ApplicationState::Status)
    );
    assert_eq!(StateKey::parse("status"), StateKey::User("status"));
    for s in ApplicationState::ALL {
        assert_eq!(ApplicationState::from_code(s.code()), Some(*s));
        assert_eq!(ApplicationState::from_name(s.name()), Some(*s));
        assert_eq!(std::format!("{}", StateKey::Known(*s)), s.name());
    }
    assert_eq!(ApplicationState::ALL.len(), 16);
    assert_eq!(std::format!("{}", StateKey::Unknown(300)), "UNKNOWN_300");
}

#[test]
fn unknown_codes_that_would_alias_other_keys_are_refused() {
    let limits = Limits::default();
    let mut s = State::new(Generation(1));
    assert_eq!(
        s.set_local(StateKey::Unknown(0), b"x", &limits),
        Err(MergeError::BadKey)
    );
    assert_eq!(
        s.set_local(StateKey::Unknown(1), b"x", &limits),
        Err(MergeError::BadKey)
    );
    s.set_local(StateKey::Unknown(900), b"x", &limits).unwrap();
    assert_eq!(s.len(), 1);
}

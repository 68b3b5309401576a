//! The ledger's rules, on a clock the tests move by hand.

use std::time::Duration;

use bytes::Bytes;
use flextide_queue_core::Message;

use super::*;
use crate::codec;

fn record(ledger: &mut Ledger, partition: i32, offset: i64, not_before: Option<i64>) {
    fetch(ledger, partition, offset, Message::new("m"), not_before);
}

fn keyed(ledger: &mut Ledger, partition: i32, offset: i64, key: &str) {
    fetch(
        ledger,
        partition,
        offset,
        Message::new("m").with_ordering_key(key),
        None,
    );
}

fn fetch(
    ledger: &mut Ledger,
    partition: i32,
    offset: i64,
    message: Message,
    not_before: Option<i64>,
) {
    let r = codec::encode(&message, 0, not_before);
    let raw = Raw {
        partition,
        offset,
        key: r.key,
        value: r.value,
        headers: r.headers,
        timestamp: None,
    };
    let d = codec::decode(&raw);
    ledger.fetched(raw, d);
}

fn tokens() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("t{n}")
    }
}

const LEASE: Duration = Duration::from_secs(10);

#[test]
fn lease_expiry_spends_an_attempt_and_fences_the_old_receipt() {
    let mut l = Ledger::default();
    record(&mut l, 0, 0, None);
    let now = Instant::now();
    let mut t = tokens();
    let (c, _, _) = l.claim(10, now, 0, LEASE, None, &mut t);
    assert_eq!((c.len(), c[0].attempt), (1, 1));
    // Held while leased.
    assert!(l.claim(10, now, 0, LEASE, None, &mut t).0.is_empty());
    // A lease that ended still settles while nobody took the record.
    assert!(l.leased(0, 0, &c[0].token).is_ok());
    let later = now + LEASE;
    let (again, _, _) = l.claim(10, later, 0, LEASE, None, &mut t);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(l.settle(0, 0, &c[0].token), Err(Stale));
    assert_eq!(l.settle(0, 0, &again[0].token), Ok(Some(1)));
    assert_eq!(l.settle(0, 0, &again[0].token), Err(Stale));
}

#[test]
fn a_full_claim_stops_and_the_next_one_goes_on() {
    let mut l = Ledger::default();
    for o in 0..5 {
        record(&mut l, 0, o, None);
    }
    let now = Instant::now();
    let mut t = tokens();
    let (all, _, _) = l.claim(5, now, 0, LEASE, None, &mut t);
    assert_eq!(all.len(), 5);
    // Every lease ended: a claim of 2 takes the first two and stops there.
    let later = now + LEASE;
    let (first, _, _) = l.claim(2, later, 0, LEASE, None, &mut t);
    let offsets: Vec<i64> = first.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [0, 1]);
    // The rest still end with their attempt spent, when a claim gets there.
    let (rest, _, _) = l.claim(10, later, 0, LEASE, None, &mut t);
    let seen: Vec<(i64, u32)> = rest.iter().map(|c| (c.offset, c.attempt)).collect();
    assert_eq!(seen, [(2, 2), (3, 2), (4, 2)]);
    // A record past its attempts further on is found by a claim of nothing
    // (the sweep) even while nothing else is claimed.
    let (_, dying, _) = l.claim(0, later + LEASE, 0, LEASE, Some(2), &mut t);
    assert_eq!(dying.len(), 5);
}

#[test]
fn settling_out_of_order_commits_only_the_contiguous_run() {
    let mut l = Ledger::default();
    for o in 0..3 {
        record(&mut l, 0, o, None);
    }
    let now = Instant::now();
    let (c, _, _) = l.claim(10, now, 0, LEASE, None, tokens());
    assert_eq!(l.settle(0, 2, &c[2].token), Ok(None));
    assert_eq!(l.settle(0, 1, &c[1].token), Ok(None));
    assert_eq!(l.settle(0, 0, &c[0].token), Ok(Some(3)));
}

#[test]
fn max_attempts_and_undecodable_records_die() {
    let mut l = Ledger::default();
    record(&mut l, 0, 0, None);
    l.fetched(
        Raw {
            partition: 0,
            offset: 1,
            key: None,
            value: Bytes::new(),
            headers: vec![],
            timestamp: None,
        },
        Err("garbled".into()),
    );
    let now = Instant::now();
    let mut t = tokens();
    let (c, dying, _) = l.claim(10, now, 0, LEASE, Some(1), &mut t);
    assert_eq!((c.len(), dying.len()), (1, 1));
    assert!(dying[0].reason.starts_with("undecodable:"));
    let (c2, dying2, _) = l.claim(10, now + LEASE, 0, LEASE, Some(1), &mut t);
    assert!(c2.is_empty());
    assert_eq!(dying2[0].reason, "max attempts exceeded (1)");
    assert_eq!(l.settle_dying(0, 1), None, "offset 0 still open");
    assert_eq!(l.settle_dying(0, 0), Some(2));
    assert!(l.leased(0, 0, &c[0].token).is_err());
}

#[test]
fn delayed_records_wait_and_release_keeps_the_attempt() {
    let mut l = Ledger::default();
    record(&mut l, 1, 0, Some(5_000));
    let now = Instant::now();
    let mut t = tokens();
    let (c, _, due) = l.claim(10, now, 1_000, LEASE, None, &mut t);
    assert!(c.is_empty());
    assert_eq!(due, Some(5_000));
    assert_eq!(l.counts(now, 1_000).delayed, 1);
    let (c, _, _) = l.claim(10, now, 5_000, LEASE, None, &mut t);
    assert_eq!(c[0].attempt, 1);
    l.release(1, 0, &c[0].token).unwrap();
    let (c2, _, _) = l.claim(10, now, 5_000, LEASE, None, &mut t);
    assert_eq!(c2[0].attempt, 1, "a release spends no attempt");
    assert!(l.release(1, 0, &c[0].token).is_err());
}

#[test]
fn revoked_partitions_make_receipts_stale() {
    let mut l = Ledger::default();
    record(&mut l, 0, 0, None);
    record(&mut l, 1, 0, None);
    let (c, _, _) = l.claim(10, Instant::now(), 0, LEASE, None, tokens());
    l.revoke(&[0]);
    assert_eq!(l.settle(0, 0, &c[0].token), Err(Stale));
    assert_eq!(l.settle(1, 0, &c[1].token), Ok(Some(1)));
    assert_eq!(l.len(), 0);
    // Fetched again (this consumer got the partition back): the lost
    // delivery counts.
    record(&mut l, 0, 0, None);
    let (c, _, _) = l.claim(10, Instant::now(), 0, LEASE, None, tokens());
    assert_eq!(c[0].attempt, 2);
}

#[test]
fn a_key_goes_one_at_a_time_and_a_nack_keeps_its_place() {
    let mut l = Ledger::default();
    keyed(&mut l, 0, 0, "A");
    keyed(&mut l, 0, 1, "A");
    keyed(&mut l, 0, 2, "B");
    record(&mut l, 0, 3, None);
    let now = Instant::now();
    let mut t = tokens();
    let (c, _, _) = l.claim(10, now, 0, LEASE, None, &mut t);
    let got: Vec<i64> = c.iter().map(|c| c.offset).collect();
    assert_eq!(got, [0, 2, 3], "A's second waits behind A's head");
    l.settle(0, 2, &c[1].token).unwrap();
    l.settle(0, 3, &c[2].token).unwrap();
    // Nacked with a delay: A's head stays first and blocks A.
    l.retry_in_place(0, 0, &c[0].token, Some(5_000)).unwrap();
    assert!(
        l.leased(0, 0, &c[0].token).is_err(),
        "the nack settled the receipt"
    );
    let (none, _, due) = l.claim(10, now, 1_000, LEASE, None, &mut t);
    assert!(none.is_empty());
    assert_eq!(due, Some(5_000));
    let (again, _, _) = l.claim(10, now, 5_000, LEASE, None, &mut t);
    assert_eq!((again.len(), again[0].offset, again[0].attempt), (1, 0, 2));
    // Expired lease: still A's head, attempt 3.
    let (again, _, _) = l.claim(10, now + LEASE, 5_000, LEASE, None, &mut t);
    assert_eq!((again.len(), again[0].offset, again[0].attempt), (1, 0, 3));
    assert_eq!(l.settle(0, 0, &again[0].token), Ok(Some(1)));
    let (next, _, _) = l.claim(10, now + LEASE, 5_000, LEASE, None, &mut t);
    assert_eq!((next.len(), next[0].offset, next[0].attempt), (1, 1, 1));
}

#[test]
fn a_keyed_nack_survives_a_revoke_in_this_process() {
    let mut l = Ledger::default();
    keyed(&mut l, 0, 0, "A");
    let (c, _, _) = l.claim(10, Instant::now(), 0, LEASE, None, tokens());
    l.retry_in_place(0, 0, &c[0].token, Some(9_000)).unwrap();
    l.revoke(&[0]);
    keyed(&mut l, 0, 0, "A");
    let (none, _, due) = l.claim(10, Instant::now(), 0, LEASE, None, tokens());
    assert!(none.is_empty());
    assert_eq!(due, Some(9_000), "the delay is remembered");
    let (c, _, _) = l.claim(10, Instant::now(), 9_000, LEASE, None, tokens());
    assert_eq!(c[0].attempt, 2, "the nack's attempt is remembered");
}

//! The lease state machine on tokio's paused clock.

use super::*;
use crate::queue::receipt::parse_receipt;
use flextide_queue_core::Receipt;
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};

const LEASE: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(2);

fn state(max_attempts: Option<u32>) -> State {
    let options = QueueOptions::default()
        .lease(LEASE)
        .max_attempts(max_attempts);
    let mut st = State::new(0xab, &options, GRACE);
    st.reset(1);
    st
}

fn receive(st: &mut State, tag: u64, props: &BasicProperties) {
    st.received(tag);
    st.buffer.push_back(Buffered {
        generation: st.generation,
        tag,
        incarnation: 0,
        decoded: crate::codec::decode(format!("m{tag}").into_bytes(), props, 0),
    });
}

fn take(st: &mut State, n: usize) -> (Vec<Delivery>, Vec<(Lease, String)>) {
    let mut refused = Vec::new();
    let out = st.take(1, n, Instant::now(), &mut refused);
    (out, refused)
}

fn token(r: &Receipt) -> (u64, u64, u64) {
    let p = parse_receipt(r).unwrap();
    (p.token, p.generation, p.tag)
}

#[tokio::test(start_paused = true)]
async fn an_ended_lease_is_taken_again_then_republished_after_the_grace() {
    let mut st = state(None);
    receive(&mut st, 1, &BasicProperties::default());
    let (out, _) = take(&mut st, 10);
    let first = &out[0];
    assert_eq!(first.attempt, 1);
    assert_eq!(first.lease_deadline, Instant::now() + LEASE);

    tokio::time::advance(LEASE - Duration::from_millis(1)).await;
    assert!(!st.due(Instant::now()).woke, "not before the deadline");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(st.due(Instant::now()).woke);
    // Within the grace, the old receipt still settles it...
    let (t, g, tag) = token(&first.receipt);
    assert!(st.leased.get(&t).is_some_and(|l| l.expired));
    // ...and the next pop delivers it again, attempt + 1.
    let (again, _) = take(&mut st, 10);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].message.id, first.message.id);
    assert!(matches!(
        st.claim(t, g, tag, Some(1)),
        Err(QueueError::StaleReceipt { .. })
    ));

    // Not taken in its grace: republished for every consumer.
    tokio::time::advance(LEASE).await;
    assert!(st.due(Instant::now()).woke);
    tokio::time::advance(GRACE).await;
    let due = st.due(Instant::now());
    assert_eq!(due.requeue.len(), 1);
    assert_eq!(due.requeue[0].attempt, 2);
    assert!(st.leased.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_last_attempt_goes_to_the_dead_letters() {
    let mut st = state(Some(2));
    let mut table = FieldTable::default();
    table.insert(crate::codec::H_ATTEMPTS.into(), AMQPValue::LongLongInt(1));
    receive(&mut st, 1, &BasicProperties::default().with_headers(table));
    let (out, refused) = take(&mut st, 1);
    assert_eq!((out[0].attempt, refused.len()), (2, 0));
    tokio::time::advance(LEASE).await;
    let due = st.due(Instant::now());
    assert_eq!((due.dead.len(), due.requeue.len(), due.woke), (1, 0, false));

    // Over the limit already when received: refused, never handed out.
    let mut table = FieldTable::default();
    table.insert(crate::codec::H_ATTEMPTS.into(), AMQPValue::LongLongInt(2));
    receive(&mut st, 2, &BasicProperties::default().with_headers(table));
    let (out, refused) = take(&mut st, 1);
    assert!(out.is_empty());
    assert_eq!(refused[0].1, "max attempts exceeded (2)");
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_delivery_is_refused_alone() {
    let mut st = state(Some(3));
    receive(&mut st, 1, &BasicProperties::default());
    let mut table = FieldTable::default();
    table.insert(
        crate::codec::H_ATTEMPTS.into(),
        AMQPValue::LongString("x".into()),
    );
    receive(&mut st, 2, &BasicProperties::default().with_headers(table));
    receive(&mut st, 3, &BasicProperties::default());
    let (out, refused) = take(&mut st, 10);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|d| d.attempt == 1));
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0.tag, 2);
    assert!(refused[0].1.starts_with("undecodable:"), "{}", refused[0].1);
}

#[tokio::test(start_paused = true)]
async fn receipts_settle_once_and_extend_moves_the_deadline() {
    let mut st = state(None);
    receive(&mut st, 1, &BasicProperties::default());
    let (out, _) = take(&mut st, 1);
    let (t, g, tag) = token(&out[0].receipt);
    assert!(matches!(
        st.claim(t, g, tag + 1, Some(1)),
        Err(QueueError::InvalidReceipt { .. })
    ));
    let later = Instant::now() + LEASE * 3;
    st.extend(t, g, tag, later).unwrap();
    tokio::time::advance(LEASE).await;
    assert!(!st.due(Instant::now()).woke, "extended");
    let lease = st.claim(t, g, tag, Some(1)).unwrap();
    assert!(matches!(
        st.claim(t, g, tag, Some(1)),
        Err(QueueError::StaleReceipt { .. })
    ));
    // A failed settle gives it back, and the receipt works again.
    st.restore(t, lease);
    assert!(st.claim(t, g, tag, Some(1)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_new_link_makes_old_receipts_stale() {
    let mut st = state(None);
    receive(&mut st, 1, &BasicProperties::default());
    let (out, _) = take(&mut st, 1);
    let (t, g, tag) = token(&out[0].receipt);
    assert!(matches!(
        st.claim(t, g, tag, None),
        Err(QueueError::StaleReceipt { .. })
    ));
    receive(&mut st, 2, &BasicProperties::default());
    st.reset(2);
    assert!(st.buffer.is_empty() && st.leased.is_empty());
    assert_eq!(st.multiple_ack_covers(2, &[1]), 0);
}

#[tokio::test(start_paused = true)]
async fn purge_drops_buffered_and_future_redeliveries() {
    let mut st = state(None);
    receive(&mut st, 1, &BasicProperties::default());
    receive(&mut st, 2, &BasicProperties::default());
    let (out, _) = take(&mut st, 1);
    assert_eq!(st.purge(), vec![2]);
    tokio::time::advance(LEASE).await;
    let due = st.due(Instant::now());
    assert_eq!(due.ack.len(), 1);
    assert_eq!(due.ack[0].decoded.message.id, out[0].message.id);
}

#[tokio::test(start_paused = true)]
async fn idle_ends_the_subscription_then_gives_back_the_buffer() {
    let mut st = state(None);
    let (_tx, done) = tokio::sync::oneshot::channel();
    st.consumer = Some(ConsumerSlot {
        incarnation: 1,
        tag: "c1".into(),
        prefetch: 8,
        outstanding: 0,
        done,
    });
    receive(&mut st, 1, &BasicProperties::default());
    st.idle_since = Instant::now();
    let (linger, hold) = (Duration::from_millis(50), Duration::from_millis(250));
    assert!(st.idle(Instant::now(), linger, hold).0.is_none());
    tokio::time::advance(linger).await;
    let (cancel, back) = st.idle(Instant::now(), linger, hold);
    assert_eq!((cancel.as_deref(), back.len()), (Some("c1"), 0));
    tokio::time::advance(hold).await;
    assert_eq!(st.idle(Instant::now(), linger, hold).1.len(), 1);
}

#[test]
fn the_window_follows_the_peak_demand() {
    let mut st = state(None);
    assert!(st.resubscribe(1000).is_none(), "no demand");
    st.demand = 3;
    let r = st.resubscribe(1000).unwrap();
    assert_eq!((r.prefetch, r.qos, r.cancel), (8, Some(8), None));
    let (_tx, done) = tokio::sync::oneshot::channel();
    st.consumer = Some(ConsumerSlot {
        incarnation: r.incarnation,
        tag: "c".into(),
        prefetch: r.prefetch,
        outstanding: 0,
        done,
    });
    assert!(st.resubscribe(1000).is_none(), "the window has room");
    st.demand = 600;
    let r = st.resubscribe(1000).unwrap();
    assert_eq!((r.prefetch, r.cancel.as_deref()), (1000, Some("c")));
}

fn slot(st: &mut State, tag: &str) -> tokio::sync::oneshot::Sender<()> {
    let (tx, done) = tokio::sync::oneshot::channel();
    st.consumer = Some(ConsumerSlot {
        incarnation: 1,
        tag: tag.into(),
        prefetch: 8,
        outstanding: 0,
        done,
    });
    tx
}

#[tokio::test]
async fn unsubscribing_waits_for_every_subscription_of_the_link() {
    let mut st = state(None);
    // Ended by the idle pass, then by a resubscription: both tasks may
    // still be buffering what came before their cancel-ok.
    let idle = slot(&mut st, "c1");
    st.idle_since = Instant::now() - Duration::from_secs(1);
    let (cancel, _) = st.idle(Instant::now(), Duration::ZERO, Duration::from_secs(60));
    assert_eq!(cancel.as_deref(), Some("c1"));
    let replaced = slot(&mut st, "c2");
    st.demand = 600;
    assert_eq!(st.resubscribe(1000).unwrap().cancel.as_deref(), Some("c2"));
    let current = slot(&mut st, "c3");

    let (tag, done) = st.unsubscribe();
    assert_eq!(tag.as_deref(), Some("c3"));
    assert_eq!(
        done.len(),
        3,
        "the current subscription and two cancelled ones"
    );
    assert!(st.consumer.is_none());
    drop((idle, replaced, current));
    futures::future::join_all(done).await;
    assert_eq!(st.unsubscribe().1.len(), 0, "nothing left to wait for");
}

#[test]
fn unclaimed_takes_the_buffer_of_the_current_link_only() {
    let mut st = state(None);
    receive(&mut st, 1, &BasicProperties::default());
    receive(&mut st, 2, &BasicProperties::default());
    st.buffer.push_back(Buffered {
        generation: 0,
        tag: 9,
        incarnation: 0,
        decoded: crate::codec::decode(b"old".to_vec(), &BasicProperties::default(), 0),
    });
    let (out, _) = take(&mut st, 1);
    assert_eq!(out.len(), 1);
    let back = st.unclaimed();
    assert_eq!(back.iter().map(|b| b.tag).collect::<Vec<_>>(), [2]);
    assert_eq!(back[0].decoded.attempts_done, 0, "given back uncounted");
    assert!(st.buffer.is_empty());
    assert_eq!(st.leased.len(), 1, "what a caller holds is left alone");
}

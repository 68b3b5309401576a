//! What this backend does beyond (or differently from) the shared suite:
//! `drop_queue` and `release`, the unfenced receipts, `extend` past
//! `ack_wait`, the lease kept by the consumer, delayed pushes by server
//! version, retried pushes that are not enqueued twice, the dedup window
//! fixed by the stream, delayed unique pushes, and deliveries to a
//! pop that was cut short; opening and reading creating nothing, and the
//! connector's admin operations.
//! Needs `FLEXTIDE_TEST_NATS_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names nats).

use std::time::Duration;

use async_nats::jetstream;
use flextide_queue_conformance::{integration_test, unique_queue_name};
use flextide_queue_core::{
    Connector, Message, Pushed, QueueError, QueueOptions, QueueProvider, Replay,
};
use flextide_queue_nats::{Nats, NatsConnector};

const WAIT: Duration = Duration::from_secs(10);

async fn stream_exists(url: &str, name: &str) -> bool {
    let client = async_nats::connect(url).await.unwrap();
    jetstream::new(client).get_stream(name).await.is_ok()
}

async fn drop_queue_removes_streams_and_a_missing_queue_is_ok(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("drop");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    q.push(Message::new("waiting")).await.unwrap();
    q.push(Message::new("leased")).await.unwrap();
    let d = q.pop(WAIT).await.unwrap().expect("a delivery");
    q.dead_letter(&d.receipt, "dead").await.unwrap();
    assert!(stream_exists(&url, &format!("FTQ_{name}")).await);
    assert!(stream_exists(&url, &format!("FTDLQ_{name}")).await);
    q.drop_queue().await.unwrap();
    assert!(!stream_exists(&url, &format!("FTQ_{name}")).await);
    assert!(!stream_exists(&url, &format!("FTDLQ_{name}")).await);
    // Dropping it again, or a queue never opened, succeeds.
    q.drop_queue().await.unwrap();
    client
        .drop_queue(&unique_queue_name("never"))
        .await
        .unwrap();
    // Opening it again starts empty.
    let again = client.open(&name, QueueOptions::default()).await.unwrap();
    let s = again.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.dead_lettered), (0, 0, 0));
    again.drop_queue().await.unwrap();
}

async fn release_is_unsupported_and_changes_nothing(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("release");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    assert!(!q.capabilities().release);
    q.push(Message::new("x")).await.unwrap();
    let d = q.pop(WAIT).await.unwrap().expect("a delivery");
    let err = q.release(&d.receipt).await.unwrap_err();
    assert!(matches!(err, QueueError::Unsupported { .. }), "{err}");
    // The delivery is still leased and settles normally.
    assert!(q.pop(Duration::from_millis(300)).await.unwrap().is_none());
    q.delete(&d.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
}

/// The documented consequence of `fenced_receipts: false`: a late ack of the
/// first delivery deletes the message while its redelivery is leased.
async fn a_stale_receipt_still_deletes(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("stale");
    let options = QueueOptions::default().lease(Duration::from_secs(1));
    let q = client.open(&name, options).await.unwrap();
    assert!(!q.capabilities().fenced_receipts);
    q.push(Message::new("x")).await.unwrap();
    let first = q.pop(WAIT).await.unwrap().expect("first delivery");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = q.pop(WAIT).await.unwrap().expect("redelivery");
    assert_eq!(second.attempt, 2);
    q.delete(&first.receipt).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight), (0, 0), "{s:?}");
    // Deleting twice succeeds too.
    q.delete(&second.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
}

/// `extend(by)` past `ack_wait` is kept alive by the handle: the message
/// stays invisible for `by`, then comes back once the renewals stop.
async fn extend_past_ack_wait_keeps_the_lease(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("extend");
    // A 2 s lease renewed every second: a renewal late by most of a second
    // (a loaded machine) still lands in time.
    let options = QueueOptions::default().lease(Duration::from_secs(2));
    let q = client.open(&name, options.clone()).await.unwrap();
    let other = client.open(&name, options).await.unwrap();
    q.push(Message::new("x")).await.unwrap();
    let d = q.pop(WAIT).await.unwrap().expect("a delivery");
    assert_eq!(d.attempt, 1, "first delivery: {d:?}");
    let t0 = tokio::time::Instant::now();
    q.extend(&d.receipt, Duration::from_secs(8)).await.unwrap();
    // Three leases later, still invisible to another handle.
    if let Some(early) = other.pop(Duration::from_secs(6)).await.unwrap() {
        panic!(
            "the extended lease ended early, after {:?}: {early:?}",
            t0.elapsed()
        );
    }
    // The extension ends: the message comes back with its attempt counted.
    let again = other
        .pop(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("redelivered after the extension");
    // The attempt is the server's delivery count, and after a lease renewed
    // with +WPI runs out nats-server 2.9 reports it unreliably both ways:
    // seen as 3 (consumer sequence 2) and, in a CI run under load, as 1
    // for this very redelivery (2.14 reports 2). So only the redelivery and
    // its timing are asserted here; crates/flextide-queue-nats/README.md
    // says what this means for max_attempts on 2.9.
    assert!(
        again.attempt >= 1,
        "redelivery after {:?}: first {d:?}, again {again:?}",
        t0.elapsed()
    );
    assert_eq!(again.message.id, d.message.id);
    assert!(
        t0.elapsed() >= Duration::from_secs(8),
        "came back before `by`"
    );
    other.delete(&again.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
}

/// The lease belongs to the consumer, made by the queue's first push or
/// pop: a handle opened later, or opened earlier and popping later, gets
/// that one.
async fn the_first_lease_wins(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("lease");
    let first = client
        .open(&name, QueueOptions::default().lease(Duration::from_secs(7)))
        .await
        .unwrap();
    let early = client
        .open(
            &name,
            QueueOptions::default().lease(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    // Nothing exists yet: each handle shows its own option.
    assert_eq!(early.lease(), Duration::from_secs(60));
    first.push(Message::new("x")).await.unwrap();
    assert_eq!(first.lease(), Duration::from_secs(7));
    let late = client
        .open(
            &name,
            QueueOptions::default().lease(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(late.lease(), Duration::from_secs(7));
    let d = early.pop(WAIT).await.unwrap().expect("a delivery");
    assert_eq!(early.lease(), Duration::from_secs(7));
    early.delete(&d.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
}

/// Delayed pushes follow the server version: refused (with the version in
/// the message) where schedules are missing, never silently dropped.
async fn delay_follows_the_server_version(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("delay");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    let delayed = Message::new("later").with_delay(Duration::from_secs(1));
    if q.capabilities().delay {
        q.push(delayed).await.unwrap();
        assert!(q.pop(Duration::ZERO).await.unwrap().is_none());
        let d = q.pop(WAIT).await.unwrap().expect("the delayed message");
        q.delete(&d.receipt).await.unwrap();
    } else {
        let err = q.push(delayed).await.unwrap_err();
        assert!(matches!(err, QueueError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains(q.server_version()), "{err}");
        assert_eq!(q.stats().await.unwrap().delayed, 0);
    }
    client.drop_queue(&name).await.unwrap();
}

/// A push retried with the same message (after a timeout, say) is stored once.
async fn a_retried_push_is_stored_once(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("dedup");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    let msg = Message::new("once");
    q.push(msg.clone()).await.unwrap();
    q.push(msg.clone()).await.unwrap();
    q.push_batch(vec![msg.clone()]).await.unwrap();
    assert_eq!(q.stats().await.unwrap().depth, 1);
    let d = q.pop(WAIT).await.unwrap().expect("the message");
    assert_eq!(d.message.id, msg.id);
    q.delete(&d.receipt).await.unwrap();
    assert!(q.pop(Duration::from_millis(300)).await.unwrap().is_none());
    client.drop_queue(&name).await.unwrap();
}

/// The dedup window is the stream's duplicate window, fixed by the handle
/// whose push or pop created the queue (like the lease); the dedup records
/// go with `drop_queue`.
async fn the_first_dedup_window_wins(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("window");
    let short = QueueOptions::default().dedup_window(Duration::from_secs(90));
    let long = QueueOptions::default().dedup_window(Duration::from_secs(600));
    let first = client.open(&name, short).await.unwrap();
    let early = client.open(&name, long.clone()).await.unwrap();
    // Nothing exists yet: each handle shows its own option.
    assert_eq!(
        early.capabilities().dedup_window,
        Some(Duration::from_secs(600))
    );
    let id = first
        .push(Message::new("a").with_dedup_id("k"))
        .await
        .unwrap();
    assert_eq!(first.dedup_window(), Duration::from_secs(90));
    let late = client.open(&name, long).await.unwrap();
    assert_eq!(
        late.capabilities().dedup_window,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        early
            .push_unique(Message::new("b").with_dedup_id("k"))
            .await
            .unwrap(),
        Pushed::Duplicate(id)
    );
    assert_eq!(early.dedup_window(), Duration::from_secs(90));
    assert!(stream_exists(&url, &format!("FTDD_{name}")).await);
    client.drop_queue(&name).await.unwrap();
    assert!(!stream_exists(&url, &format!("FTDD_{name}")).await);
}

/// A delayed push with a dedup id (servers with message schedules) is
/// checked when it is pushed, and names the first message both while it
/// waits and after it was handled.
async fn a_delayed_duplicate_is_dropped(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("dedup-delay");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    if !q.capabilities().delay {
        q.drop_queue().await.unwrap();
        return;
    }
    let later = |body: &str| {
        Message::new(body.to_owned())
            .with_dedup_id("k")
            .with_delay(Duration::from_secs(1))
    };
    let first = later("first");
    assert_eq!(
        q.push_unique(first.clone()).await.unwrap(),
        Pushed::Enqueued(first.id.clone())
    );
    assert_eq!(
        q.push_unique(later("waiting")).await.unwrap(),
        Pushed::Duplicate(first.id.clone())
    );
    let d = q.pop(WAIT).await.unwrap().expect("the delayed message");
    assert_eq!(d.message.id, first.id);
    assert_eq!(d.message.dedup_id.as_deref(), Some("k"));
    q.delete(&d.receipt).await.unwrap();
    assert_eq!(
        q.push_unique(later("handled")).await.unwrap(),
        Pushed::Duplicate(first.id.clone())
    );
    assert!(q.pop(Duration::from_secs(2)).await.unwrap().is_none());
    client.drop_queue(&name).await.unwrap();
}

/// A pop cut short leaves its pull request open on the server; a message
/// pushed then is sent to the handle's inbox, and the next pop hands it out
/// at once, on its first attempt, instead of it waiting out a 30 s lease.
async fn a_delivery_after_a_cut_short_pop_goes_to_the_next_pop(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("cut");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_millis(200), q.pop(WAIT)).await;
    assert!(cut.is_err(), "the pop was meant to be cut short");
    // The cut pop's request (1 s) is still open on the server.
    let id = q.push(Message::new("late")).await.unwrap();
    let started = tokio::time::Instant::now();
    let d = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the message sent to the cut pop's request");
    assert_eq!(d.message.id, id);
    assert_eq!(d.attempt, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    q.delete(&d.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
}

async fn consumer_exists(url: &str, queue: &str) -> bool {
    let client = async_nats::connect(url).await.unwrap();
    match jetstream::new(client)
        .get_stream(format!("FTQ_{queue}"))
        .await
    {
        Ok(s) => s.consumer_info("flextide").await.is_ok(),
        Err(_) => false,
    }
}

/// What the queue has on the server: (stream, dead-letter stream, consumer).
async fn on_server(url: &str, queue: &str) -> (bool, bool, bool) {
    (
        stream_exists(url, &format!("FTQ_{queue}")).await,
        stream_exists(url, &format!("FTDLQ_{queue}")).await,
        consumer_exists(url, queue).await,
    )
}

/// Opening creates nothing, and so do the read-only calls and purges of a
/// queue never written to (they answer as for an empty queue); the first
/// push creates the stream, the dead-letter stream and the consumer.
async fn opening_and_reading_create_nothing(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("fresh");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.depth, s.in_flight, s.delayed, s.dead_lettered),
        (0, 0, 0, 0)
    );
    assert_eq!(s.oldest_age, None);
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(q.purge().await.unwrap(), 0);
    assert_eq!(q.purge_dead_letters().await.unwrap(), 0);
    assert_eq!(q.replay_dead_letters(Replay::All).await.unwrap(), 0);
    assert_eq!(on_server(&url, &name).await, (false, false, false));
    q.push(Message::new("first")).await.unwrap();
    assert_eq!(on_server(&url, &name).await, (true, true, true));
    assert_eq!(q.stats().await.unwrap().depth, 1);
    client.drop_queue(&name).await.unwrap();
    assert_eq!(on_server(&url, &name).await, (false, false, false));
}

/// A pop on a fresh queue creates it too (the consumer it pulls from), and
/// a push or pop on a handle whose queue was dropped makes it again.
async fn pop_creates_and_drop_resets(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("popfirst");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    assert!(q.pop(Duration::from_millis(100)).await.unwrap().is_none());
    assert_eq!(on_server(&url, &name).await, (true, true, true));
    q.drop_queue().await.unwrap();
    assert_eq!(on_server(&url, &name).await, (false, false, false));
    q.push(Message::new("again")).await.unwrap();
    assert_eq!(on_server(&url, &name).await, (true, true, true));
    let d = q
        .pop(WAIT)
        .await
        .unwrap()
        .expect("the message pushed after the drop");
    assert_eq!(d.message.payload.as_ref(), b"again");
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

/// Another handle's next push, batch push or pop on a queue dropped under
/// it creates the queue again, empty, instead of failing for ever.
async fn other_handles_recreate_a_dropped_queue(url: String) {
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("dropped");
    let pusher = client.open(&name, QueueOptions::default()).await.unwrap();
    let popper = client.open(&name, QueueOptions::default()).await.unwrap();
    let batcher = client.open(&name, QueueOptions::default()).await.unwrap();
    pusher.push(Message::new("old")).await.unwrap();
    batcher.push(Message::new("old 2")).await.unwrap();
    let d = popper.pop(WAIT).await.unwrap().expect("a delivery");
    popper.delete(&d.receipt).await.unwrap();
    client.drop_queue(&name).await.unwrap();
    assert_eq!(on_server(&url, &name).await, (false, false, false));

    // A pop first: it finds the consumer gone and makes the queue again.
    assert!(
        popper
            .pop(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(on_server(&url, &name).await, (true, true, true));
    client.drop_queue(&name).await.unwrap();

    let id = pusher.push(Message::new("new")).await.unwrap();
    assert_eq!(on_server(&url, &name).await, (true, true, true));
    client.drop_queue(&name).await.unwrap();
    let ids = batcher
        .push_batch(vec![Message::new("b1"), Message::new("b2")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let s = popper.stats().await.unwrap();
    assert_eq!(
        s.depth, 2,
        "only the batch pushed after the last drop: {s:?}"
    );
    let got = popper.pop_batch(10, WAIT).await.unwrap();
    let mut bodies: Vec<_> = got.iter().map(|d| d.message.payload.to_vec()).collect();
    bodies.sort();
    assert_eq!(bodies, vec![b"b1".to_vec(), b"b2".to_vec()]);
    assert!(got.iter().all(|d| d.message.id != id));
    for d in &got {
        popper.delete(&d.receipt).await.unwrap();
    }
    client.drop_queue(&name).await.unwrap();
}

/// The connector's admin operations: `create_queue` (idempotent, keeping
/// the lease of the first), `list_queues` (queue names from `FTQ_` streams,
/// sorted, dead-letter streams left out), `open_existing` (creates nothing)
/// and `migrate` (nothing to migrate).
async fn connector_admin_operations(url: String) {
    let c = NatsConnector;
    let a = unique_queue_name("admin-a");
    let b = unique_queue_name("admin-b");
    let missing = unique_queue_name("admin-missing");
    let lease = QueueOptions::default().lease(Duration::from_secs(9));
    c.create_queue(&url, &b, lease.clone()).await.unwrap();
    c.create_queue(&url, &a, lease.clone()).await.unwrap();
    assert_eq!(on_server(&url, &a).await, (true, true, true));
    // Again, with another lease: what exists is kept.
    c.create_queue(&url, &a, QueueOptions::default())
        .await
        .unwrap();
    let client = Nats::new(&url).unwrap();
    let opened = client.open(&a, QueueOptions::default()).await.unwrap();
    assert_eq!(opened.lease(), Duration::from_secs(9));

    let names = c.list_queues(&url).await.unwrap();
    assert!(
        names.windows(2).all(|w| w[0] <= w[1]),
        "not sorted: {names:?}"
    );
    assert!(names.contains(&a) && names.contains(&b), "{names:?}");
    assert!(!names.contains(&missing), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("FT")), "{names:?}");
    let pos = |n: &String| names.iter().position(|x| x == n).unwrap();
    assert!(pos(&a) < pos(&b));

    // open_existing of a missing queue: an empty queue, nothing created.
    let look = c
        .open_existing(&url, &missing, QueueOptions::default())
        .await
        .unwrap();
    let s = look.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.dead_lettered), (0, 0, 0));
    assert!(look.dead_letters(5).await.unwrap().is_empty());
    look.close().await.unwrap();
    assert_eq!(on_server(&url, &missing).await, (false, false, false));
    assert!(!c.list_queues(&url).await.unwrap().contains(&missing));

    // open_existing of an existing queue sees its messages.
    opened.push(Message::new("seen")).await.unwrap();
    let look = c
        .open_existing(&url, &a, QueueOptions::default())
        .await
        .unwrap();
    assert_eq!(look.stats().await.unwrap().depth, 1);
    look.close().await.unwrap();

    assert_eq!(c.migrate(&url).await.unwrap(), None);

    for name in [&a, &b] {
        let q = c.open(&url, name, QueueOptions::default()).await.unwrap();
        q.drop_queue().await.unwrap();
        q.close().await.unwrap();
    }
    let names = c.list_queues(&url).await.unwrap();
    assert!(!names.contains(&a) && !names.contains(&b), "{names:?}");
    assert_eq!(on_server(&url, &a).await, (false, false, false));
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "nats",
        "FLEXTIDE_TEST_NATS_URL",
        vec![
            integration_test!(drop_queue_removes_streams_and_a_missing_queue_is_ok),
            integration_test!(release_is_unsupported_and_changes_nothing),
            integration_test!(a_stale_receipt_still_deletes),
            integration_test!(extend_past_ack_wait_keeps_the_lease).threads(2),
            integration_test!(the_first_lease_wins),
            integration_test!(delay_follows_the_server_version),
            integration_test!(a_retried_push_is_stored_once),
            integration_test!(the_first_dedup_window_wins),
            integration_test!(a_delayed_duplicate_is_dropped),
            integration_test!(a_delivery_after_a_cut_short_pop_goes_to_the_next_pop),
            integration_test!(opening_and_reading_create_nothing),
            integration_test!(pop_creates_and_drop_resets),
            integration_test!(connector_admin_operations),
            integration_test!(other_handles_recreate_a_dropped_queue),
        ],
    )
}

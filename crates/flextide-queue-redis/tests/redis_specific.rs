//! Behaviour particular to the Redis backend, beyond the conformance suite:
//! recovery of a vanished consumer group, blocking reads off the shared
//! connection, key layout, prefixes and error classification.
//!
//! Run with: `FLEXTIDE_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p flextide-queue-redis --test redis_specific`

use std::time::Duration;

use flextide_queue_conformance::{integration_test, unique_queue_name};
use flextide_queue_core::{
    Message, QueueError, QueueOptions, QueueProvider, Replay, backend::UNDECODABLE,
};
use flextide_queue_redis::{
    Connector, RedisBackend, RedisConfig, RedisConnector, RedisQueue, SCHEMES,
};

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys_of(url: &str, prefix: &str, name: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:{{{name}}}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

async fn open(url: &str, hint: &str, options: QueueOptions) -> (RedisBackend, RedisQueue) {
    let backend = RedisBackend::connect(RedisConfig::new(url)).await.unwrap();
    let queue = backend
        .open(&unique_queue_name(hint), options)
        .await
        .unwrap();
    (backend, queue)
}

async fn group_is_recreated_when_it_vanished(url: String) {
    let (_b, q) = open(&url, "nogroup", QueueOptions::default()).await;
    let mut conn = raw(&url).await;
    let stream = format!("flextide:{{{}}}:s", q.queue_name());

    // The whole stream gone (FLUSHALL, a restart without persistence).
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    let id = q.push(Message::new("after the flush")).await.unwrap();
    let d = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("delivered after the stream vanished");
    assert_eq!(d.message.id, id);
    assert_eq!(d.attempt, 1);
    q.delete(&d.receipt).await.unwrap();

    // Only the group gone, with a message already in the stream.
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&stream)
        .arg("flextide")
        .query_async(&mut conn)
        .await
        .unwrap();
    let id = q
        .push(Message::new("after the group vanished"))
        .await
        .unwrap();
    let d = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("delivered after the group vanished");
    assert_eq!(d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

async fn blocking_pop_does_not_stall_the_shared_connection(url: String) {
    let backend = RedisBackend::connect(RedisConfig::new(url.as_str()))
        .await
        .unwrap();
    let idle = backend
        .open(&unique_queue_name("idle"), QueueOptions::default())
        .await
        .unwrap();
    let busy = backend
        .open(&unique_queue_name("busy"), QueueOptions::default())
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        let r = idle.pop(Duration::from_secs(3)).await;
        (idle, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the waiter blocks, the same backend keeps serving other calls.
    for _ in 0..20 {
        busy.push(Message::new("x")).await.unwrap();
        let d = busy.pop(Duration::ZERO).await.unwrap().expect("message");
        busy.delete(&d.receipt).await.unwrap();
    }
    assert!(!waiter.is_finished(), "the waiting pop ended early");
    let (idle, r) = waiter.await.unwrap();
    assert!(r.unwrap().is_none());
    idle.drop_queue().await.unwrap();
    busy.drop_queue().await.unwrap();
}

async fn keys_carry_the_hash_tag_and_drop_queue_removes_them(url: String) {
    let (_b, q) = open(
        &url,
        "keys",
        QueueOptions::default()
            .lease(Duration::from_millis(200))
            .max_attempts(Some(1)),
    )
    .await;
    q.push(Message::new("a")).await.unwrap();
    q.push(Message::new("b").with_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    q.dead_letter(&d.receipt, "test").await.unwrap();
    q.push(Message::new("c")).await.unwrap();
    let _leased = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    let keys = keys_of(&url, "flextide", q.queue_name()).await;
    assert!(keys.len() >= 5, "expected the queue's keys, found {keys:?}");
    q.drop_queue().await.unwrap();
    assert_eq!(
        keys_of(&url, "flextide", q.queue_name()).await,
        Vec::<String>::new()
    );
}

async fn prefixes_separate_queues_of_the_same_name(url: String) {
    let name = unique_queue_name("prefix");
    let a = RedisBackend::connect(RedisConfig::new(url.as_str()).key_prefix("ft-test-a"))
        .await
        .unwrap();
    let b = RedisBackend::connect(RedisConfig::new(url.as_str()).key_prefix("ft-test-b"))
        .await
        .unwrap();
    let qa = a.open(&name, QueueOptions::default()).await.unwrap();
    let qb = b.open(&name, QueueOptions::default()).await.unwrap();
    qa.push(Message::new("for a")).await.unwrap();
    assert!(qb.pop(Duration::from_millis(200)).await.unwrap().is_none());
    assert!(qa.pop(Duration::from_secs(1)).await.unwrap().is_some());
    assert!(!keys_of(&url, "ft-test-a", &name).await.is_empty());
    qa.drop_queue().await.unwrap();
    qb.drop_queue().await.unwrap();
    assert!(keys_of(&url, "ft-test-a", &name).await.is_empty());
}

async fn nack_with_delay_keeps_the_attempt_count_and_headers(url: String) {
    let (_b, q) = open(&url, "nackdelay", QueueOptions::default()).await;
    let id = q
        .push(Message::new("x").with_header("k", "v"))
        .await
        .unwrap();
    let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    let enqueued = d.message.enqueued_at;
    q.nack(&d.receipt, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    let d = q
        .pop(Duration::from_secs(3))
        .await
        .unwrap()
        .expect("redelivered after the delay");
    assert_eq!(d.message.id, id);
    assert_eq!(d.attempt, 2);
    assert_eq!(d.message.headers.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        d.message.enqueued_at, enqueued,
        "enqueue time survives the move"
    );
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

async fn expired_lease_out_of_attempts_is_dead_lettered_by_stats(url: String) {
    let (_b, q) = open(
        &url,
        "expirydl",
        QueueOptions::default()
            .lease(Duration::from_millis(200))
            .max_attempts(Some(1)),
    )
    .await;
    q.push(Message::new("x")).await.unwrap();
    let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.dead_lettered), (0, 0, 1));
    let dl = q.dead_letters(10).await.unwrap();
    assert_eq!(dl[0].reason, "max attempts exceeded (1)");
    assert_eq!(dl[0].attempts, 1);
    assert!(matches!(
        q.delete(&d.receipt).await,
        Err(QueueError::StaleReceipt { .. })
    ));
    q.drop_queue().await.unwrap();
}

async fn configuration_and_connection_errors(_url: String) {
    let bad_prefix =
        RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379/").key_prefix("a{b}")).await;
    assert!(matches!(bad_prefix, Err(QueueError::Configuration { .. })));
    let bad_url = RedisBackend::connect(RedisConfig::new("not a url")).await;
    assert!(matches!(bad_url, Err(QueueError::Configuration { .. })));
    let refused = RedisBackend::connect(
        RedisConfig::new("redis://:sekrit@127.0.0.1:1/")
            .connection_timeout(Duration::from_millis(500)),
    )
    .await;
    let e = refused.expect_err("nothing listens on port 1");
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string().contains("connection refused at 127.0.0.1:1"),
        "{e}"
    );
    assert!(!e.to_string().contains("sekrit") && !format!("{e:?}").contains("sekrit"));
}

/// The connector the facade registers: opens by URL, and its errors never
/// show the URL's password.
async fn connector_opens_queues_by_url(url: String) {
    let c = RedisConnector;
    assert!(c.accepts(&url) && c.accepts("rediss://h:6380/") && !c.accepts("amqp://h/"));
    assert_eq!(c.schemes(), SCHEMES);
    assert_eq!((c.name(), c.url_vars()), ("redis", &["REDIS_URL"][..]));
    let name = unique_queue_name("connector");
    let q = c.open(&url, &name, QueueOptions::default()).await.unwrap();
    let id = q.push(Message::new("via the connector")).await.unwrap();
    let d = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
    RedisBackend::connect(RedisConfig::new(url.as_str()))
        .await
        .unwrap()
        .drop_queue(&name)
        .await
        .unwrap();
    let e = c
        .open(
            "redis://:sekrit@127.0.0.1:1/",
            &name,
            QueueOptions::default(),
        )
        .await
        .expect_err("nothing listens on port 1");
    assert!(e.is_retryable(), "{e}");
    assert!(!e.to_string().contains("sekrit") && !format!("{e:?}").contains("sekrit"));
    let e = c
        .open("redis://:sekrit@[nope/", &name, QueueOptions::default())
        .await
        .expect_err("a malformed URL");
    assert!(matches!(e, QueueError::Configuration { .. }), "{e}");
    assert!(!e.to_string().contains("sekrit"), "{e}");
}

async fn open_refuses_bad_names_and_debug_hides_the_url(url: String) {
    let backend = RedisBackend::connect(RedisConfig::new(url.as_str()))
        .await
        .unwrap();
    assert!(matches!(
        backend.open("a}b", QueueOptions::default()).await,
        Err(QueueError::InvalidQueueName { .. })
    ));
    assert!(matches!(
        backend.open("x{y}", QueueOptions::default()).await,
        Err(QueueError::InvalidQueueName { .. })
    ));
    assert!(!format!("{backend:?}").contains("127.0.0.1"));
}

async fn receipts_of_a_vanished_group_stay_stale(url: String) {
    let (_b, q) = open(&url, "regroup", QueueOptions::default()).await;
    let mut conn = raw(&url).await;
    let stream = format!("flextide:{{{}}}:s", q.queue_name());
    let id = q.push(Message::new("x")).await.unwrap();
    let old = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    // The group goes (an operator, a restore) while the entry stays: the
    // entry is delivered again as a first delivery, under a new consumer.
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&stream)
        .arg("flextide")
        .query_async(&mut conn)
        .await
        .unwrap();
    let new = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(new.message.id, id);
    assert_ne!(old.receipt, new.receipt);
    for r in [
        q.delete(&old.receipt).await,
        q.nack(&old.receipt, Duration::ZERO).await,
        q.extend(&old.receipt, Duration::from_secs(5)).await,
        q.dead_letter(&old.receipt, "stale").await,
    ] {
        assert!(matches!(r, Err(QueueError::StaleReceipt { .. })), "{r:?}");
    }
    q.delete(&new.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

/// As above, with the queue opened again (a process restarting) before
/// the pop that re-creates the group: old receipts must stay stale too.
async fn receipts_stay_stale_when_reopening_recreates_the_group(url: String) {
    let (b, q) = open(&url, "reopen", QueueOptions::default()).await;
    let mut conn = raw(&url).await;
    let stream = format!("flextide:{{{}}}:s", q.queue_name());
    let id = q.push(Message::new("x")).await.unwrap();
    let old = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&stream)
        .arg("flextide")
        .query_async(&mut conn)
        .await
        .unwrap();
    let again = b
        .open(q.queue_name(), QueueOptions::default())
        .await
        .unwrap();
    let new = again.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(new.message.id, id);
    let r = again.delete(&old.receipt).await;
    assert!(matches!(r, Err(QueueError::StaleReceipt { .. })), "{r:?}");
    again.delete(&new.receipt).await.unwrap();
    again.drop_queue().await.unwrap();
}

async fn redeliveries_share_a_batch_with_fresh_entries(url: String) {
    let (_b, q) = open(
        &url,
        "mixed",
        QueueOptions::default().lease(Duration::from_millis(300)),
    )
    .await;
    let ids = q
        .push_batch((0..4).map(|i| Message::new(format!("m{i}"))).collect())
        .await
        .unwrap();
    let first = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!(first.message.id, ids[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The expired head comes first, then fresh entries; the fresh entries a
    // batch has no room for are given back and keep attempt 1 and their
    // place.
    let got = q.pop_batch(2, Duration::from_secs(1)).await.unwrap();
    let seen: Vec<_> = got.iter().map(|d| (&d.message.id, d.attempt)).collect();
    assert_eq!(seen, vec![(&ids[0], 2), (&ids[1], 1)]);
    let rest = q.pop_batch(10, Duration::from_secs(1)).await.unwrap();
    let seen: Vec<_> = rest.iter().map(|d| (&d.message.id, d.attempt)).collect();
    assert_eq!(seen, vec![(&ids[2], 1), (&ids[3], 1)]);
    assert!(matches!(
        q.delete(&first.receipt).await,
        Err(QueueError::StaleReceipt { .. })
    ));
    let receipts: Vec<_> = got.iter().chain(&rest).map(|d| d.receipt.clone()).collect();
    q.delete_batch(&receipts).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight), (0, 0));
    q.drop_queue().await.unwrap();
}

async fn leases_of_the_previous_layout_still_expire(url: String) {
    let (_b, q) = open(
        &url,
        "oldlayout",
        QueueOptions::default().lease(Duration::from_secs(30)),
    )
    .await;
    let mut conn = raw(&url).await;
    let key = |part: &str| format!("flextide:{{{}}}:{part}", q.queue_name());
    let id = q.push(Message::new("x")).await.unwrap();
    // The previous layout created the group when a queue was opened.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key("s"))
        .arg("flextide")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A delivery made by the previous layout: read under consumer `c`, a
    // lease deadline (already passed) in `:l` and a token in `:k`.
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("flextide")
        .arg("c")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(key("s"))
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let entry: Vec<(String, Vec<(String, redis::Value)>)> = match reply {
        redis::Value::Array(mut s) => {
            let redis::Value::Array(mut pair) = s.remove(0) else {
                panic!()
            };
            redis::from_redis_value(pair.pop().unwrap()).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let entry_id = &entry[0].0;
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(key("l"))
        .arg(1)
        .arg(entry_id)
        .ignore()
        .cmd("HSET")
        .arg(key("k"))
        .arg(entry_id)
        .arg("1.0123456789abcdef1")
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = q
        .pop(Duration::from_secs(1))
        .await
        .unwrap()
        .expect("redelivered");
    assert_eq!((d.message.id, d.attempt), (id, 2));
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

async fn delete_batch_spanning_many_pending_entries(url: String) {
    let (_b, q) = open(&url, "span", QueueOptions::default()).await;
    q.push_batch((0..100).map(|i| Message::new(format!("m{i}"))).collect())
        .await
        .unwrap();
    let got = q.pop_batch(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 100);
    // The two ends of the batch: between them lie 98 pending entries, more
    // than the script's one XPENDING over the span returns, so the last
    // receipt is looked up on its own; a forged count is stale.
    let (first, last) = (&got[0].receipt, &got[99].receipt);
    let forged = flextide_queue_core::Receipt::new(last.as_str().replace(":1.", ":2."));
    match q.delete_batch(&[last.clone(), forged, first.clone()]).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), [1]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.stats().await.unwrap().in_flight, 98);
    let rest: Vec<_> = got[1..99].iter().map(|d| d.receipt.clone()).collect();
    q.delete_batch(&rest).await.unwrap();
    assert!(matches!(
        q.delete(last).await,
        Err(QueueError::StaleReceipt { .. })
    ));
    q.drop_queue().await.unwrap();
}

async fn first_deliveries_are_checked_by_the_acknowledgement(url: String) {
    let (_b, q) = open(&url, "fastack", QueueOptions::default()).await;
    q.push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await
        .unwrap();
    let got = q.pop_batch(3, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 3);
    q.delete(&got[0].receipt).await.unwrap();
    // Listed twice, already deleted, and one good: only the good one and
    // the first of the pair count.
    let batch = [
        got[1].receipt.clone(),
        got[1].receipt.clone(),
        got[0].receipt.clone(),
        got[2].receipt.clone(),
    ];
    match q.delete_batch(&batch).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 2]);
        }
        other => panic!("{other:?}"),
    }
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight), (0, 0));
    q.drop_queue().await.unwrap();
}

/// `XADD` into the queue's stream, as another producer would.
async fn xadd(url: &str, key: &str, fields: &[(&str, &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut raw(url).await).await.unwrap()
}

/// Clause 12: an entry with only `p` (a plain body) is delivered with that
/// body and the id `redis-<entry id>`, which it keeps after a nack with a
/// delay (the message moves to another stream entry), in the dead letters
/// and through a replay.
async fn plain_body_keeps_an_id_derived_from_its_entry(url: String) {
    let (_b, q) = open(&url, "plain", QueueOptions::default()).await;
    let stream = format!("flextide:{{{}}}:s", q.queue_name());
    let entry = xadd(&url, &stream, &[("p", b"plain body")]).await;
    let want = format!("redis-{entry}");
    let d = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the plain body");
    assert_eq!(d.message.id.as_str(), want);
    assert_eq!(&d.message.payload[..], b"plain body");
    assert_eq!(d.attempt, 1);
    q.nack(&d.receipt, Duration::from_millis(200))
        .await
        .unwrap();
    let d = q
        .pop(Duration::from_secs(3))
        .await
        .unwrap()
        .expect("the plain body after a delayed nack");
    assert_eq!((d.message.id.as_str(), d.attempt), (want.as_str(), 2));
    q.dead_letter(&d.receipt, "by hand").await.unwrap();
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.id.as_str(), want);
    let replayed = q
        .replay_dead_letters(Replay::Ids(vec![d.message.id.clone()]))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let d = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("replayed");
    assert_eq!((d.message.id.as_str(), d.attempt), (want.as_str(), 1));
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

/// Clause 12: entries that cannot be decoded (no `p`, a message id alone,
/// headers that are not JSON, a non-numeric bookkeeping field) between good
/// messages: the pop returns the good ones on their first attempt, the bad
/// ones go to the dead letters by themselves, and nothing stays leased.
async fn undecodable_entries_are_dead_lettered_alone(url: String) {
    let (_b, q) = open(
        &url,
        "undecodable",
        QueueOptions::default().max_attempts(Some(3)),
    )
    .await;
    let stream = format!("flextide:{{{}}}:s", q.queue_name());
    let a = q.push(Message::new("a")).await.unwrap();
    xadd(&url, &stream, &[("body", b"no p field")]).await;
    xadd(&url, &stream, &[("i", b"an-id-without-a-body")]).await;
    xadd(&url, &stream, &[("p", b"x"), ("h", b"{oops")]).await;
    xadd(&url, &stream, &[("a", b"zzz"), ("p", b"x")]).await;
    let b = q.push(Message::new("b")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let batch = q.pop_batch(10, Duration::from_millis(300)).await.unwrap();
        for d in batch {
            assert_eq!(d.attempt, 1, "{} lost an attempt", d.message.id);
            q.delete(&d.receipt).await.unwrap();
            got.push(d.message.id);
        }
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got, vec![a, b]);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 4, "{dead:?}");
    for d in &dead {
        assert!(d.reason.starts_with(UNDECODABLE), "{:?}", d.reason);
    }
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.dead_lettered), (0, 0, 4));
    // The same through the all-Lua pop (taken when redeliveries are due).
    let (_b2, q2) = open(
        &url,
        "undecodable-lua",
        QueueOptions::default().lease(Duration::from_millis(200)),
    )
    .await;
    let stream = format!("flextide:{{{}}}:s", q2.queue_name());
    q2.push(Message::new("expires")).await.unwrap();
    let first = q2.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    xadd(&url, &stream, &[("body", b"no p field")]).await;
    let c = q2.push(Message::new("c")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let batch = q2.pop_batch(10, Duration::from_secs(1)).await.unwrap();
    let seen: Vec<_> = batch.iter().map(|d| (&d.message.id, d.attempt)).collect();
    assert_eq!(seen, vec![(&first.message.id, 2), (&c, 1)]);
    assert_eq!(q2.dead_letters(10).await.unwrap().len(), 1);
    q.drop_queue().await.unwrap();
    q2.drop_queue().await.unwrap();
}

/// Listing dead letters, peeking and counting never fail on entries
/// another client wrote into the stream or the dead-letter stream.
async fn listing_and_stats_survive_foreign_entries(url: String) {
    let (_b, q) = open(&url, "foreignlist", QueueOptions::default()).await;
    let key = |part: &str| format!("flextide:{{{}}}:{part}", q.queue_name());
    xadd(&url, &key("x"), &[("junk", b"\xff\xfe")]).await;
    xadd(
        &url,
        &key("x"),
        &[("p", b"x"), ("h", b"[1]"), ("n", b"many")],
    )
    .await;
    xadd(&url, &key("s"), &[("t", b"yesterday"), ("p", b"x")]).await;
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| !d.message.id.as_str().is_empty()));
    q.stats().await.unwrap();
    q.peek(10).await.unwrap();
    q.drop_queue().await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "redis",
        "FLEXTIDE_TEST_REDIS_URL",
        vec![
            integration_test!(group_is_recreated_when_it_vanished),
            integration_test!(blocking_pop_does_not_stall_the_shared_connection),
            integration_test!(keys_carry_the_hash_tag_and_drop_queue_removes_them),
            integration_test!(prefixes_separate_queues_of_the_same_name),
            integration_test!(nack_with_delay_keeps_the_attempt_count_and_headers),
            integration_test!(expired_lease_out_of_attempts_is_dead_lettered_by_stats),
            integration_test!(configuration_and_connection_errors),
            integration_test!(open_refuses_bad_names_and_debug_hides_the_url),
            integration_test!(receipts_of_a_vanished_group_stay_stale),
            integration_test!(receipts_stay_stale_when_reopening_recreates_the_group),
            integration_test!(redeliveries_share_a_batch_with_fresh_entries),
            integration_test!(leases_of_the_previous_layout_still_expire),
            integration_test!(delete_batch_spanning_many_pending_entries),
            integration_test!(first_deliveries_are_checked_by_the_acknowledgement),
            integration_test!(plain_body_keeps_an_id_derived_from_its_entry),
            integration_test!(undecodable_entries_are_dead_lettered_alone),
            integration_test!(listing_and_stats_survive_foreign_entries),
            integration_test!(connector_opens_queues_by_url),
        ],
    )
}

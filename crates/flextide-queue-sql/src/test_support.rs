//! What the SQL backends' own tests and conformance harnesses share
//! (feature `test-support`, for their dev-dependency only): the rows
//! another producer writes, the harness settings that go with them, the
//! connections each queue opened (for `disrupt`), and checks every SQL
//! backend makes the same way.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use flextide_queue_conformance::{Connect, ForeignEntry, HarnessSettings, Located, Server};
use flextide_queue_core::{Connector, Message, MessageId, QueueError, QueueOptions, QueueProvider};

/// The columns another producer writes with plain SQL for a
/// [`ForeignEntry`] (contract clause 12): its body, and headers only for an
/// undecodable entry (text that is not the JSON object of strings we
/// write). `None` for an entry this helper does not know.
pub fn foreign_row(entry: ForeignEntry) -> Option<(Vec<u8>, Option<&'static str>)> {
    match entry {
        ForeignEntry::Plain(body) => Some((body.to_vec(), None)),
        ForeignEntry::Undecodable => Some((b"undecodable".to_vec(), Some("{not json"))),
        _ => None,
    }
}

/// The settings of a harness whose `write_foreign` writes [`foreign_row`]s
/// and, when `can_disrupt`, kills the connections of a queue.
pub fn harness_settings(can_disrupt: bool) -> HarnessSettings {
    HarnessSettings {
        can_disrupt,
        foreign_plain: true,
        foreign_undecodable: true,
        lists_leftovers: true,
        ..HarnessSettings::default()
    }
}

/// Counts the rows a queue holds in the three shared tables, for
/// `Harness::leftovers`; binds the queue name three times, `?` placeholders
/// (MySQL, SQLite). PostgreSQL: [`LEFTOVERS_SQL_PG`].
pub const LEFTOVERS_SQL: &str = "SELECT \
     (SELECT COUNT(*) FROM flextide_queue_messages WHERE queue = ?), \
     (SELECT COUNT(*) FROM flextide_queue_dead_letters WHERE queue = ?), \
     (SELECT COUNT(*) FROM flextide_queue_dedup WHERE queue = ?)";

/// [`LEFTOVERS_SQL`] with PostgreSQL's placeholders (binds the name once).
pub const LEFTOVERS_SQL_PG: &str = "SELECT \
     (SELECT COUNT(*) FROM flextide_queue_messages WHERE queue = $1), \
     (SELECT COUNT(*) FROM flextide_queue_dead_letters WHERE queue = $1), \
     (SELECT COUNT(*) FROM flextide_queue_dedup WHERE queue = $1)";

/// What `Harness::leftovers` reports for the row counts [`LEFTOVERS_SQL`]
/// read (messages, dead letters, dedup ids): one line per table that still
/// holds rows of the queue.
pub fn leftover_rows((messages, dead_letters, dedup): (i64, i64, i64)) -> Vec<String> {
    [
        ("flextide_queue_messages", messages),
        ("flextide_queue_dead_letters", dead_letters),
        ("flextide_queue_dedup", dedup),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(table, n)| format!("{table}: {n} rows"))
    .collect()
}

/// The server of a harness: the URL in `var`, or a container of `server`;
/// the `Connect` to return when there is neither.
pub async fn locate<H>(var: &str, server: Server) -> Result<Located, Connect<H>> {
    flextide_queue_conformance::locate(var, server)
        .await
        .map_err(Connect::NotConfigured)
}

/// Whatever a harness tags each queue's connections with (server-side
/// connection ids, application names), so that `disrupt` kills exactly the
/// connections of one case's queue and not those of the cases beside it.
#[derive(Debug)]
pub struct PerQueue<T>(Mutex<HashMap<String, Vec<T>>>);

impl<T> Default for PerQueue<T> {
    fn default() -> Self {
        PerQueue(Mutex::default())
    }
}

impl<T: Clone> PerQueue<T> {
    /// Records `tag` for the queue `name`.
    pub fn add(&self, name: &str, tag: T) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_default().push(tag);
    }

    /// The tags of the queue `name`.
    pub fn of(&self, name: &str) -> Vec<T> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(name).cloned().unwrap_or_default()
    }

    /// Forgets the queue `name` (its cleanup).
    pub fn forget(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(name);
    }
}

/// A connector's schemes are its crate's `SCHEMES`; it accepts `accepted`
/// (in any case) and refuses `refused`.
pub fn check_schemes(connector: &dyn Connector, schemes: &[&str], accepted: &str, refused: &str) {
    assert_eq!(connector.schemes(), schemes);
    assert!(connector.accepts(accepted), "{accepted}");
    assert!(!connector.accepts(refused), "{refused}");
}

/// Opening each of `urls` (bad options, a bad host, nothing listening)
/// fails with an error that does not show the password `s3cret-pw`.
pub async fn check_open_hides_password(connector: &dyn Connector, urls: &[&str]) {
    for url in urls {
        assert!(url.contains("s3cret-pw"), "{url}");
        let e = connector
            .open(url, "q", QueueOptions::default())
            .await
            .expect_err(url)
            .to_string();
        assert!(!e.contains("s3cret-pw"), "{url}: {e}");
    }
}

/// The connector's admin operations on the server at `url`: `migrate`
/// reports a schema (nothing left to apply the second time), `create_queue`
/// is idempotent, `list_queues` shows a queue with a message, and
/// `open_existing` sees its count. Cleans up the queue it used.
pub async fn check_admin_by_url(connector: &dyn Connector, url: &str) {
    let options = QueueOptions::default();
    assert!(connector.migrate(url).await.unwrap().is_some());
    assert_eq!(connector.migrate(url).await.unwrap(), Some(Vec::new()));
    let name = flextide_queue_conformance::unique_queue_name("admin");
    for _ in 0..2 {
        connector
            .create_queue(url, &name, options.clone())
            .await
            .unwrap();
    }
    let q = connector.open(url, &name, options.clone()).await.unwrap();
    q.push(Message::new("x")).await.unwrap();
    let listed = connector.list_queues(url).await.unwrap();
    assert!(listed.contains(&name), "{name} not in {listed:?}");
    assert!(
        listed.windows(2).all(|w| w[0] <= w[1]),
        "sorted: {listed:?}"
    );
    let looking = connector.open_existing(url, &name, options).await.unwrap();
    assert_eq!(looking.stats().await.unwrap().depth, 1);
    q.purge().await.unwrap();
    assert!(!connector.list_queues(url).await.unwrap().contains(&name));
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    listener.local_addr().expect("its address").port()
}

/// Opening `url_for(port)` on a port nothing listens on fails at once
/// (well within 5 s, where the pool's acquire timeout would take 10 or
/// 30) with a retryable `connection refused at 127.0.0.1:PORT`.
pub async fn check_refused_fast(connector: &dyn Connector, url_for: impl Fn(u16) -> String) {
    let port = closed_port();
    let url = url_for(port);
    let started = std::time::Instant::now();
    let e = connector
        .open(&url, "q", QueueOptions::default())
        .await
        .expect_err("nothing listens");
    let took = started.elapsed();
    assert!(
        e.to_string()
            .contains(&format!("connection refused at 127.0.0.1:{port}")),
        "{e}"
    );
    assert!(e.is_retryable(), "{e:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Nothing is ready on `q`: a pop that does not wait returns nothing and
/// the depth is 0.
pub async fn check_nothing_ready(q: &dyn QueueProvider) {
    assert!(q.pop(Duration::ZERO).await.unwrap().is_none());
    assert_eq!(q.stats().await.unwrap().depth, 0);
}

/// The next message of `q` (waiting up to 5 s) is `id`; it is deleted.
pub async fn check_next_is(q: &dyn QueueProvider, id: &MessageId) {
    let d = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(&d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
}

/// A consumer "crashes" holding the only message of `q` (opened with a
/// lease under a second): nobody sees it meanwhile, it comes back as
/// attempt 2 when the lease ends, and the first receipt is stale.
pub async fn check_crashed_consumer(q: &dyn QueueProvider) {
    let id = q.push(Message::new("work")).await.unwrap();
    let first = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("delivered");
    assert!(q.pop(Duration::ZERO).await.unwrap().is_none());
    let again = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered after the lease");
    assert_eq!(again.message.id, id);
    assert_eq!(again.attempt, 2);
    assert!(matches!(
        q.delete(&first.receipt).await,
        Err(QueueError::StaleReceipt { .. })
    ));
    q.delete(&again.receipt).await.unwrap();
}

/// Pushes a bait, then cuts 600 pops of `q` short at 0 to ~3 ms (before,
/// during and after the claim's BEGIN, statement and COMMIT), then pushes
/// 40 messages: the caller checks from another connection that they are
/// all visible, i.e. that no pop left its connection inside a transaction.
pub async fn cut_pops_short_then_push_40(q: &dyn QueueProvider) {
    q.push(Message::new("bait")).await.unwrap();
    for i in 0..600u64 {
        let cut = Duration::from_micros((i * 7919) % 3000);
        let _ = tokio::time::timeout(cut, q.pop_batch(10, Duration::ZERO)).await;
    }
    for i in 0..40 {
        q.push(Message::new(format!("m{i}"))).await.unwrap();
    }
}

/// Pushes of ten dedup ids from every handle (one queue, as many pools or
/// processes as the caller opened), three rounds each with the middle one a
/// batch, all at once: exactly one message per dedup id is enqueued, and
/// every push of an id names it. The queue holds nothing else.
pub async fn check_unique_pushes_race(handles: &[Arc<dyn QueueProvider>]) {
    const KEYS: usize = 10;
    let mut tasks = Vec::new();
    for (h, q) in handles.iter().enumerate() {
        for round in 0..3 {
            let q = Arc::clone(q);
            tasks.push(tokio::spawn(async move {
                let messages: Vec<Message> = (0..KEYS)
                    .map(|k| {
                        Message::new(format!("{h}-{round}-{k}")).with_dedup_id(format!("k{k}"))
                    })
                    .collect();
                if round == 1 {
                    let ids = q.push_batch(messages).await.unwrap();
                    ids.into_iter().enumerate().collect::<Vec<_>>()
                } else {
                    let mut ids = Vec::new();
                    for (k, m) in messages.into_iter().enumerate() {
                        ids.push((k, q.push(m).await.unwrap()));
                    }
                    ids
                }
            }));
        }
    }
    let mut named: HashMap<usize, HashSet<MessageId>> = HashMap::new();
    for task in tasks {
        for (k, id) in task.await.unwrap() {
            named.entry(k).or_default().insert(id);
        }
    }
    let q = &handles[0];
    let delivered = q.pop_batch(100, Duration::from_secs(2)).await.unwrap();
    assert_eq!(delivered.len(), KEYS, "one message per dedup id");
    for d in &delivered {
        let k: usize = d.message.dedup_id.as_deref().unwrap()[1..].parse().unwrap();
        assert_eq!(
            named[&k],
            HashSet::from([d.message.id.clone()]),
            "every push of k{k} names the one enqueued"
        );
        q.delete(&d.receipt).await.unwrap();
    }
    assert!(q.pop(Duration::ZERO).await.unwrap().is_none());
}

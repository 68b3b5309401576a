//! The backend (connections) and the queue handle implementing `QueueProvider`.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use flextide_queue_core::{
    BatchFailure, Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result,
    backend::{check_payload, decode_headers, encode_headers, new_token, system_time_from_millis},
    validate_queue_name,
};
use redis::{
    AsyncConnectionConfig, Client, RedisError, Value,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use tokio::time::Instant;

use crate::{BACKEND, RedisConfig, error, scripts};

/// Most items one `push_batch` / `pop_batch` / `delete_batch` round trip takes;
/// larger push and delete batches are split.
pub const MAX_BATCH: usize = 1000;

/// Longest single blocking read; a longer `pop` wait loops, so a consumer
/// never relies on one wake-up.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// Idle blocking connections kept per backend.
const BLOCKING_POOL: usize = 16;

/// The consumer group name (also in `lua/common.lua`).
const GROUP: &str = "flextide";

/// A connection to one Redis server, shared by every queue opened from it.
///
/// Commands go over one multiplexed [`ConnectionManager`] connection, which
/// reconnects by itself after a disconnect or a server restart. Blocking
/// reads (`pop` waiting for a message) use separate pooled connections so they
/// never stall the shared one. Every connection is named with
/// [`RedisBackend::client_name`] (`CLIENT SETNAME`), so operators can find
/// them in `CLIENT LIST`. Cloning is cheap.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: ConnectionManager,
    config: RedisConfig,
    client_name: String,
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .field("client_name", &self.inner.client_name)
            .finish()
    }
}

impl RedisBackend {
    /// Connects to the server, failing with a retryable `Connection` error when
    /// it cannot be reached and a `Configuration` error when the settings are
    /// wrong.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        config.check()?;
        let client = Client::open(config.url())
            .map_err(|_| QueueError::configuration(BACKEND, "the Redis URL is malformed"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response()))
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| error::map("connect", config.connect_timeout(), e))?;
        let client_name = format!("flextide-{}", &new_token()[..12]);
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                client,
                conn,
                config,
                client_name,
                blocking: Mutex::new(Vec::new()),
            }),
        };
        backend.name_connections().await?;
        Ok(backend)
    }

    /// Opens the queue `name` (checked with `validate_queue_name`), creating
    /// its stream and consumer group if needed, with these options.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<RedisQueue> {
        validate_queue_name(name)?;
        if options.lease.is_zero() {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be longer than zero",
            ));
        }
        let queue = RedisQueue {
            backend: self.clone(),
            name: name.to_owned(),
            keys: Keys::new(self.prefix(), name),
            options,
            consumer: Mutex::new(Arc::from("c")),
            slow: AtomicBool::new(false),
        };
        queue.ensure_group().await?;
        let mut conn = self.conn();
        for script in scripts::all() {
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| self.err("open", e))?;
        }
        Ok(queue)
    }

    /// Deletes every key of the queue `name`: messages (waiting, leased and
    /// delayed), dead letters and bookkeeping. Handles still open on it see
    /// an empty queue, and their receipts become stale.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let keys = Keys::new(self.prefix(), name);
        let _: () = redis::cmd("DEL")
            .arg(&keys.0[..])
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("drop_queue", e))?;
        Ok(())
    }

    /// The name of this backend's connections in `CLIENT LIST`.
    pub fn client_name(&self) -> &str {
        &self.inner.client_name
    }

    /// Names the shared connection again with `CLIENT SETNAME` (a reconnect
    /// forgets the name; blocking connections are named when they open).
    pub async fn name_connections(&self) -> Result<()> {
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.inner.client_name)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("client_setname", e))?;
        Ok(())
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        self.inner.config.prefix()
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn err(&self, operation: &'static str, e: RedisError) -> QueueError {
        error::map(operation, self.inner.config.response(), e)
    }

    async fn blocking_conn(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.inner.blocking.lock().unwrap().pop() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout()))
            .set_response_timeout(None);
        let mut conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.err("connect", e))?;
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.inner.client_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err("client_setname", e))?;
        Ok(conn)
    }

    fn return_blocking(&self, conn: MultiplexedConnection) {
        let mut pool = self.inner.blocking.lock().unwrap();
        if pool.len() < BLOCKING_POOL {
            pool.push(conn);
        }
    }
}

/// The keys of one queue. The `{queue}` hash tag puts them all on one Redis
/// Cluster slot, so every script may touch all of them. The first nine are
/// the scripts' keys, in the order `lua/common.lua` names them; `:t` is the
/// fast pop's scratch key (it exists only inside its MULTI/EXEC); the last,
/// `:k`, held delivery tokens in the layout before the PEL became the
/// delivery record and is kept only so that `drop_queue` removes it.
#[derive(Debug, Clone)]
struct Keys([String; 11]);

impl Keys {
    fn new(prefix: &str, queue: &str) -> Self {
        let k = |part: &str| format!("{prefix}:{{{queue}}}:{part}");
        Keys([
            k("s"),
            k("d"),
            k("m"),
            k("l"),
            k("x"),
            k("p"),
            k("w"),
            k("r"),
            k("v"),
            k("t"),
            k("k"),
        ])
    }

    fn scripts(&self) -> &[String] {
        &self.0[..9]
    }

    /// The keys of `lua/fast.lua`: the scripts' nine and the scratch key.
    fn fast(&self) -> &[String] {
        &self.0[..10]
    }

    /// The keys of `lua/post.lua`: S, L, W, R, T.
    fn post(&self) -> [&str; 5] {
        [&self.0[0], &self.0[3], &self.0[6], &self.0[7], &self.0[9]]
    }

    fn stream(&self) -> &str {
        &self.0[0]
    }

    fn wake(&self) -> &str {
        &self.0[6]
    }

    fn dead_letters(&self) -> &str {
        &self.0[4]
    }
}

/// One queue on Redis: a stream with a consumer group, plus a few keys for
/// leases, delays and dead letters. See the crate documentation.
pub struct RedisQueue {
    backend: RedisBackend,
    name: String,
    keys: Keys,
    options: QueueOptions,
    /// The consumer name the last pop reported (`c<epoch>`), which the fast
    /// pop's XREADGROUP uses; a stale one costs a retry, never a wrong lease.
    consumer: Mutex<Arc<str>>,
    /// The last pop met redeliveries: use the all-Lua pop until one does
    /// not, so that a fast pop does not read fresh entries only to give
    /// them back.
    slow: AtomicBool,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A receipt is `<stream entry id>:<delivery count>.<consumer>`: the
/// delivery as the consumer group's pending entries list records it.
fn decode_receipt(receipt: &Receipt) -> Result<(&str, &str, &str)> {
    let (id, token) = receipt.as_str().split_once(':').ok_or_else(|| {
        QueueError::invalid_receipt(BACKEND, "expected <entry id>:<count>.<consumer>")
    })?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !id
        .split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
    {
        return Err(QueueError::invalid_receipt(
            BACKEND,
            "not a stream entry id",
        ));
    }
    // The consumer is `c` or `c<epoch>`; never the nacked entries' `n`.
    let valid = token.split_once('.').filter(|(count, consumer)| {
        digits(count)
            && !count.starts_with('0')
            && consumer
                .strip_prefix('c')
                .is_some_and(|epoch| epoch.is_empty() || digits(epoch))
    });
    match valid {
        Some((count, consumer)) => Ok((id, count, consumer)),
        None => Err(QueueError::invalid_receipt(BACKEND, "malformed token")),
    }
}

fn bad_reply(what: &str) -> QueueError {
    QueueError::backend_error(
        BACKEND,
        false,
        format!("unexpected reply from a script: {what}"),
    )
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_reply("number")),
        Value::SimpleString(s) => s.parse().map_err(|_| bad_reply("number")),
        _ => Err(bad_reply("number")),
    }
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad_reply("text")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(bad_reply("text")),
    }
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad_reply("array")),
    }
}

/// A message as stored in a stream entry's fields.
#[derive(Default)]
struct Stored {
    id: Option<String>,
    payload: Vec<u8>,
    headers: String,
    enqueued_ms: Option<i64>,
    reason: String,
    attempts: u32,
    /// Deliveries before this stream entry (field `a`, after a delayed nack).
    base: u32,
}

impl Stored {
    fn parse(fields: Value) -> Result<Self> {
        let fields = array(fields)?;
        let mut s = Stored::default();
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = match &k {
                Value::BulkString(b) => &b[..],
                Value::SimpleString(t) => t.as_bytes(),
                _ => return Err(bad_reply("field name")),
            };
            match key {
                b"i" => s.id = Some(text(&v)?),
                b"p" => match v {
                    Value::BulkString(b) => s.payload = b,
                    _ => return Err(bad_reply("payload")),
                },
                b"h" => s.headers = text(&v)?,
                b"t" => s.enqueued_ms = Some(int(&v)?),
                b"why" => s.reason = text(&v)?,
                b"n" => s.attempts = u32::try_from(int(&v)?).unwrap_or(0),
                b"a" => s.base = u32::try_from(int(&v)?).unwrap_or(0),
                _ => {}
            }
        }
        Ok(s)
    }

    fn message(self, entry_id: &str) -> Result<(Message, String, u32)> {
        let ms = self.enqueued_ms.unwrap_or_else(|| entry_ms(entry_id));
        let id = self
            .id
            .ok_or_else(|| bad_reply("entry without a message id"))?;
        let mut message = Message::from_parts(id, self.payload);
        message.headers = decode_headers(BACKEND, &self.headers)?;
        message.enqueued_at = Some(system_time_from_millis(ms));
        Ok((message, self.reason, self.attempts))
    }
}

/// A stream entry id as (milliseconds, sequence), for ordering; the id was
/// checked by `decode_receipt`.
fn entry_key(entry_id: &str) -> (u64, u64) {
    let (ms, seq) = entry_id.split_once('-').unwrap_or((entry_id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn entry_ms(entry_id: &str) -> i64 {
    entry_id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// A message's stream fields.
type Fields = Vec<(&'static str, Vec<u8>)>;

/// A message of a batch ready to send: its index, fields and delay in ms.
type Pending = (usize, Fields, u64);

/// The stream fields of a message, after checking it fits this backend.
fn fields(message: &Message, max_payload: usize) -> Result<Fields> {
    check_payload(BACKEND, message.payload.len(), Some(max_payload))?;
    if message.priority > 0 {
        return Err(QueueError::unsupported(BACKEND, "priority"));
    }
    if message.ordering_key.is_some() {
        return Err(QueueError::unsupported(BACKEND, "ordering_key"));
    }
    if message.dedup_id.is_some() {
        return Err(QueueError::unsupported(BACKEND, "dedup_id"));
    }
    let mut f = vec![
        ("i", message.id.as_str().as_bytes().to_vec()),
        ("p", message.payload.to_vec()),
    ];
    if !message.headers.is_empty() {
        f.push(("h", encode_headers(&message.headers).into_bytes()));
    }
    Ok(f)
}

/// A copy of an error for the other items of a failed batch chunk.
fn copy_error(e: &QueueError) -> QueueError {
    if e.is_retryable() {
        QueueError::connection(BACKEND, e.to_string())
    } else {
        QueueError::backend_error(BACKEND, false, e.to_string())
    }
}

/// What one look at the queue found.
#[derive(Default)]
struct Found {
    deliveries: Vec<Delivery>,
    /// With no deliveries: how long to block at most (`None`: nothing is
    /// scheduled) and the last ids of the stream and the wake-up stream.
    hint: Option<Duration>,
    last_s: String,
    last_w: String,
}

/// Deliveries a script returned as id, fields, attempt, delivery count.
fn deliveries(
    mut it: impl ExactSizeIterator<Item = Value>,
    consumer: &str,
    lease_deadline: Instant,
) -> Result<Vec<Delivery>> {
    let mut out = Vec::with_capacity(it.len() / 4);
    while let (Some(id), Some(fields), Some(att), Some(count)) =
        (it.next(), it.next(), it.next(), it.next())
    {
        let id = text(&id)?;
        let (message, _, _) = Stored::parse(fields)?.message(&id)?;
        let attempt = u32::try_from(int(&att)?).unwrap_or(u32::MAX);
        let count = int(&count)?;
        out.push(Delivery::new(
            message,
            Receipt::new(format!("{id}:{count}.{consumer}")),
            attempt,
            lease_deadline,
        ));
    }
    Ok(out)
}

/// The entries of an XREADGROUP reply on one stream (none: nil).
fn stream_entries(reply: Value) -> Result<Vec<Value>> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        other => array(other)?
            .into_iter()
            .map(|s| array(s).map(|mut pair| pair.pop().unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?,
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(array(entries)?);
    }
    Ok(out)
}

impl RedisQueue {
    /// The queue's options.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// The backend this queue was opened from.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    /// Deletes every key of this queue; see [`RedisBackend::drop_queue`].
    pub async fn drop_queue(&self) -> Result<()> {
        self.backend.drop_queue(&self.name).await
    }

    fn max_attempts(&self) -> u32 {
        self.options.max_attempts.unwrap_or(0)
    }

    fn err(&self, operation: &'static str, e: RedisError) -> QueueError {
        self.backend.err(operation, e)
    }

    /// Creates the group, or re-creates it under a new consumer epoch when
    /// it vanished while the stream stayed, so old receipts stay stale.
    async fn ensure_group(&self) -> Result<()> {
        self.run("open", &self.invocation(&scripts::GROUP))
            .await
            .map(drop)
    }

    fn invocation<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.scripts() {
            inv.key(key);
        }
        inv
    }

    async fn run(
        &self,
        operation: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        inv.invoke_async(&mut self.backend.conn())
            .await
            .map_err(|e| self.err(operation, e))
    }

    /// One fenced single-delivery action of `settle.lua`.
    async fn settle(&self, operation: &'static str, receipt: &Receipt, arg: &str) -> Result<i64> {
        let (id, count, consumer) = decode_receipt(receipt)?;
        let mut inv = self.invocation(&scripts::SETTLE);
        let action = match operation {
            "nack" => "nack",
            "extend" => "extend",
            _ => "dead",
        };
        inv.arg(action)
            .arg(id)
            .arg(count)
            .arg(consumer)
            .arg(arg)
            .arg(self.max_attempts());
        let r = int(&self.run(operation, &inv).await?)?;
        if r == 0 {
            Err(QueueError::StaleReceipt { backend: BACKEND })
        } else {
            Ok(r)
        }
    }

    /// One look at the queue: deliveries, or (when none) how long to block
    /// and the ids to block from.
    async fn pop_once(&self, max: usize) -> Result<Found> {
        if !self.slow.load(Ordering::Relaxed) {
            let deliveries = self.pop_fast(max).await?;
            if !deliveries.is_empty() {
                return Ok(Found {
                    deliveries,
                    ..Found::default()
                });
            }
        }
        // Redeliveries are due, or nothing was there: the all-Lua pop also
        // says how long to block.
        self.pop_lua(max).await
    }

    /// A fast pop: one MULTI/EXEC of `fast.lua` (due work, redeliveries), a
    /// plain XREADGROUP and `post.lua` (the lease of what it read). Message
    /// bodies never pass through Lua, which would cost more than all the
    /// rest of the pop.
    async fn pop_fast(&self, max: usize) -> Result<Vec<Delivery>> {
        let want = self.consumer.lock().unwrap().clone();
        let lease = millis(self.options.lease);
        let sent = Instant::now();
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("EVAL")
            .arg(scripts::FAST.as_str())
            .arg(self.keys.fast().len())
            .arg(self.keys.fast())
            .arg(max)
            .arg(lease)
            .arg(self.max_attempts());
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&*want)
            .arg("COUNT")
            .arg(max)
            .arg("STREAMS")
            .arg(self.keys.stream())
            .arg(">");
        pipe.cmd("EVAL")
            .arg(scripts::POST.as_str())
            .arg(5)
            .arg(&self.keys.post()[..])
            .arg(max)
            .arg(lease)
            .arg(&*want);
        let replies: Vec<Value> = pipe
            .query_async(&mut self.backend.conn())
            .await
            .map_err(|e| self.err("pop", e))?;
        let [first, read, post]: [Value; 3] = replies.try_into().map_err(|_| bad_reply("pop"))?;
        // A failed first half makes post.lua give back everything read, so
        // its error is the one to report; a failed XREADGROUP read nothing.
        let first = first.extract_error().map_err(|e| self.err("pop", e))?;
        let post = array(post.extract_error().map_err(|e| self.err("pop", e))?)?;
        let (keep, gave_back) = match &post[..] {
            [keep, gave_back] => (int(keep)?, int(gave_back)?),
            _ => return Err(bad_reply("pop")),
        };
        let mut it = array(first)?.into_iter();
        let consumer: Arc<str> = Arc::from(text(&it.next().unwrap_or_default())?);
        let mut out = deliveries(it, &consumer, sent + self.options.lease)?;
        let redelivered = out.len();
        if keep > 0 {
            let read = read.extract_error().map_err(|e| self.err("pop", e))?;
            for entry in stream_entries(read)?
                .into_iter()
                .take(usize::try_from(keep).unwrap_or(0))
            {
                let (id, fields) = match array(entry)?.try_into() {
                    Ok::<[Value; 2], _>([id, fields]) => (text(&id)?, fields),
                    Err(_) => return Err(bad_reply("stream entry")),
                };
                let stored = Stored::parse(fields)?;
                let attempt = stored.base.saturating_add(1);
                let (message, _, _) = stored.message(&id)?;
                out.push(Delivery::new(
                    message,
                    Receipt::new(format!("{id}:1.{want}")),
                    attempt,
                    sent + self.options.lease,
                ));
            }
        }
        *self.consumer.lock().unwrap() = consumer;
        self.slow
            .store(redelivered > 0 || gave_back > 0, Ordering::Relaxed);
        Ok(out)
    }

    /// One run of `pop.lua`, which does the whole pop in Lua.
    async fn pop_lua(&self, max: usize) -> Result<Found> {
        let sent = Instant::now();
        let mut inv = self.invocation(&scripts::POP);
        inv.arg(max)
            .arg(millis(self.options.lease))
            .arg(self.max_attempts());
        let reply = array(self.run("pop", &inv).await?)?;
        if reply.len() < 5 || (reply.len() - 5) % 4 != 0 {
            return Err(bad_reply("pop"));
        }
        let mut it = reply.into_iter();
        let hint = int(&it.next().unwrap_or_default())?;
        let last_s = text(&it.next().unwrap_or_default()).unwrap_or_default();
        let last_w = text(&it.next().unwrap_or_default()).unwrap_or_default();
        let consumer: Arc<str> = Arc::from(text(&it.next().unwrap_or_default())?);
        let redelivered = int(&it.next().unwrap_or_default())?;
        let out = deliveries(it, &consumer, sent + self.options.lease)?;
        *self.consumer.lock().unwrap() = consumer;
        self.slow.store(redelivered > 0, Ordering::Relaxed);
        Ok(Found {
            deliveries: out,
            hint: u64::try_from(hint).ok().map(Duration::from_millis),
            last_s,
            last_w,
        })
    }

    /// Blocks on a dedicated connection until the stream or the wake-up
    /// stream gets an entry after the given ids, or `block` passes.
    async fn block(&self, block: Duration, last_s: &str, last_w: &str) -> Result<()> {
        let mut conn = self.backend.blocking_conn().await?;
        let ms = millis(block).max(1);
        let cmd = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(self.keys.stream())
            .arg(self.keys.wake())
            .arg(if last_s.is_empty() { "$" } else { last_s })
            .arg(if last_w.is_empty() { "$" } else { last_w })
            .to_owned();
        let limit = block + self.backend.inner.config.response();
        match tokio::time::timeout(limit, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.backend.return_blocking(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(self.err("pop", e)),
            Err(_) => Err(QueueError::Timeout {
                backend: BACKEND,
                operation: "pop",
                after: limit,
            }),
        }
    }

    async fn push_chunk(&self, chunk: &[Pending]) -> Result<()> {
        if chunk.iter().all(|(_, _, delay)| *delay == 0) {
            // Plain XADDs in one MULTI/EXEC: no script overhead per message.
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, fields, _) in chunk {
                let cmd = pipe.cmd("XADD").arg(self.keys.stream()).arg("*");
                for (k, v) in fields {
                    cmd.arg(*k).arg(&v[..]);
                }
                cmd.ignore();
            }
            let _: () = pipe
                .query_async(&mut self.backend.conn())
                .await
                .map_err(|e| self.err("push_batch", e))?;
            return Ok(());
        }
        let mut inv = self.invocation(&scripts::PUSH);
        for (_, fields, delay) in chunk {
            inv.arg(*delay);
            if *delay > 0 {
                inv.arg(new_token())
            } else {
                inv.arg("")
            };
            inv.arg(fields.len() * 2);
            for (k, v) in fields {
                inv.arg(*k).arg(&v[..]);
            }
        }
        self.run("push_batch", &inv).await?;
        Ok(())
    }

    async fn replay_chunk(&self, op: &str, args: &[String]) -> Result<u64> {
        let mut inv = self.invocation(&scripts::DEAD);
        inv.arg(op).arg(self.max_attempts());
        for a in args {
            inv.arg(a);
        }
        Ok(u64::try_from(int(&self.run("replay_dead_letters", &inv).await?)?).unwrap_or(0))
    }
}

#[async_trait]
impl QueueProvider for RedisQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: true,
            ordering_key: false,
            priority: false,
            delay: true,
            max_delay: None,
            max_payload_bytes: Some(self.backend.inner.config.max_payload()),
            max_batch: Some(MAX_BATCH),
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: false,
            exact_stats: true,
            peek: true,
            purge: true,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        let f = fields(&message, self.backend.inner.config.max_payload())?;
        let delay = message.delay.map(millis).unwrap_or(0);
        if delay > 0 {
            self.push_chunk(&[(0, f, delay)]).await?;
        } else {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(self.keys.stream()).arg("*");
            for (k, v) in &f {
                cmd.arg(*k).arg(&v[..]);
            }
            let _: Value = cmd
                .query_async(&mut self.backend.conn())
                .await
                .map_err(|e| self.err("push", e))?;
        }
        Ok(message.id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let max = self.backend.inner.config.max_payload();
        let mut failures = Vec::new();
        let mut ready = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match fields(m, max) {
                Ok(f) => ready.push((index, f, m.delay.map(millis).unwrap_or(0))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        for chunk in ready.chunks(MAX_BATCH) {
            if let Err(e) = self.push_chunk(chunk).await {
                if failures.is_empty() && ready.len() == chunk.len() {
                    return Err(e);
                }
                for (index, _, _) in chunk {
                    failures.push(BatchFailure {
                        index: *index,
                        error: copy_error(&e),
                    });
                }
            }
        }
        flextide_queue_core::backend::batch_result(
            BACKEND,
            messages.into_iter().map(|m| m.id).collect(),
            failures,
        )
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let Found {
                deliveries,
                hint,
                last_s,
                last_w,
            } = self.pop_once(max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut block = (deadline - now).min(MAX_BLOCK);
            if let Some(hint) = hint {
                block = block.min(hint.max(Duration::from_millis(1)));
            }
            if block < Duration::from_millis(1) {
                return Ok(Vec::new());
            }
            if let Err(e) = self.block(block, &last_s, &last_w).await {
                // The blocking connection broke; the next pop script call shows
                // whether the server itself is reachable.
                tracing::debug!(queue = %self.name, error = %e, "blocking read failed; polling again");
                tokio::time::sleep(
                    Duration::from_millis(20)
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        match self.delete_batch(std::slice::from_ref(receipt)).await {
            Err(QueueError::PartialBatch { mut failures, .. }) if failures.len() == 1 => {
                Err(failures.remove(0).error)
            }
            other => other,
        }
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        let mut valid = Vec::with_capacity(receipts.len());
        for (index, r) in receipts.iter().enumerate() {
            match decode_receipt(r) {
                Ok((id, _, _)) => valid.push((index, (id, &r.as_str()[id.len() + 1..]))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        for chunk in valid.chunks(MAX_BATCH) {
            // Grouped by token (count and consumer), which a popped batch
            // mostly shares, so the script reads each token once; the
            // span's ends let it check the whole batch with one XPENDING.
            let mut groups: Vec<(&str, Vec<(usize, &str)>)> = Vec::new();
            let (mut lo, mut hi) = ((u64::MAX, u64::MAX), (0, 0));
            let (mut lo_id, mut hi_id) = ("", "");
            for (index, (id, token)) in chunk {
                let key = entry_key(id);
                if key <= lo {
                    (lo, lo_id) = (key, id);
                }
                if key >= hi {
                    (hi, hi_id) = (key, id);
                }
                match groups.iter_mut().find(|(t, _)| t == token) {
                    Some((_, ids)) => ids.push((*index, id)),
                    None => groups.push((token, vec![(*index, id)])),
                }
            }
            let mut inv = self.invocation(&scripts::DELETE);
            inv.arg(lo_id).arg(hi_id);
            let mut order = Vec::with_capacity(chunk.len());
            for (token, ids) in &groups {
                inv.arg(*token).arg(ids.len());
                for (index, id) in ids {
                    inv.arg(*id);
                    order.push(*index);
                }
            }
            match self.run("delete", &inv).await {
                Ok(v) => {
                    for pos in array(v)? {
                        let index = usize::try_from(int(&pos)?)
                            .ok()
                            .and_then(|p| order.get(p.checked_sub(1)?))
                            .ok_or_else(|| bad_reply("delete"))?;
                        failures.push(BatchFailure {
                            index: *index,
                            error: QueueError::StaleReceipt { backend: BACKEND },
                        });
                    }
                }
                Err(e) => {
                    if receipts.len() == chunk.len() {
                        return Err(e);
                    }
                    for (index, _) in chunk {
                        failures.push(BatchFailure {
                            index: *index,
                            error: copy_error(&e),
                        });
                    }
                }
            }
        }
        flextide_queue_core::backend::batch_result(BACKEND, (), failures)
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.settle("nack", receipt, &millis(delay).to_string())
            .await
            .map(|_| ())
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.settle("extend", receipt, &millis(by).to_string())
            .await
            .map(|_| ())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.settle("dead_letter", receipt, reason)
            .await
            .map(|_| ())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&scripts::DEAD);
        inv.arg("list").arg(self.max_attempts()).arg(limit);
        let reply = array(self.run("dead_letters", &inv).await?)?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        let mut it = reply.into_iter();
        while let (Some(id), Some(fields)) = (it.next(), it.next()) {
            let id = text(&id)?;
            let (message, reason, attempts) = Stored::parse(fields)?.message(&id)?;
            out.push(DeadLetter::new(
                message,
                reason,
                attempts,
                system_time_from_millis(entry_ms(&id)),
            ));
        }
        Ok(out)
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        match which {
            Replay::Ids(ids) => {
                let mut total = 0;
                for chunk in ids.chunks(MAX_BATCH) {
                    let args: Vec<String> = chunk.iter().map(|id| id.as_str().to_owned()).collect();
                    total += self.replay_chunk("ids", &args).await?;
                }
                Ok(total)
            }
            Replay::Oldest(n) => {
                let mut total = 0u64;
                let mut left = n;
                while left > 0 {
                    let take = left.min(MAX_BATCH);
                    let moved = self.replay_chunk("oldest", &[take.to_string()]).await?;
                    total += moved;
                    left -= take;
                    if moved < take as u64 {
                        break;
                    }
                }
                Ok(total)
            }
            Replay::All => {
                // Bounded by the count at the start, so dead letters added
                // meanwhile cannot keep it going for ever.
                let start = self.stats().await?.dead_lettered;
                self.replay_dead_letters(Replay::Oldest(
                    usize::try_from(start).unwrap_or(usize::MAX),
                ))
                .await
            }
        }
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        let x = self.keys.dead_letters();
        let (len, _): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(x)
            .cmd("DEL")
            .arg(x)
            .query_async(&mut self.backend.conn())
            .await
            .map_err(|e| self.err("purge_dead_letters", e))?;
        Ok(len)
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&scripts::PEEK);
        inv.arg(limit).arg(self.max_attempts());
        let reply = array(self.run("peek", &inv).await?)?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        let mut it = reply.into_iter();
        while let (Some(id), Some(fields)) = (it.next(), it.next()) {
            let id = text(&id)?;
            out.push(Stored::parse(fields)?.message(&id)?.0);
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<u64> {
        let inv = self.invocation(&scripts::PURGE);
        Ok(u64::try_from(int(&self.run("purge", &inv).await?)?).unwrap_or(0))
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut inv = self.invocation(&scripts::STATS);
        inv.arg(self.max_attempts());
        let r = array(self.run("stats", &inv).await?)?;
        if r.len() != 6 {
            return Err(bad_reply("stats"));
        }
        let n = |i: usize| -> Result<u64> { Ok(u64::try_from(int(&r[i])?).unwrap_or(0)) };
        let oldest = int(&r[4])?;
        let now = int(&r[5])?;
        Ok(QueueStats::default()
            .with_depth(n(0)?)
            .with_in_flight(n(1)?)
            .with_delayed(n(2)?)
            .with_dead_lettered(n(3)?)
            .with_oldest_age(
                (oldest >= 0)
                    .then(|| Duration::from_millis(u64::try_from(now - oldest).unwrap_or(0))),
            ))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("flextide", "orders");
        assert_eq!(k.stream(), "flextide:{orders}:s");
        assert!(k.0.iter().all(|key| key.starts_with("flextide:{orders}:")));
    }

    #[test]
    fn receipts() {
        assert_eq!(
            decode_receipt(&Receipt::new("1700000000000-3:2.c")).unwrap(),
            ("1700000000000-3", "2", "c")
        );
        assert_eq!(
            decode_receipt(&Receipt::new("1-0:12.c3")).unwrap(),
            ("1-0", "12", "c3")
        );
        for bad in [
            "",
            "x",
            "1-2",
            "1-2:",
            "a-b:1.c",
            "12:1.c",
            "-1:1.c",
            "1-:1.c",
            "1-2:3.",
            "1-2:c",
            "1-2:.c",
            "1-2:1.n",
            "1-2:0.c",
            "1-2:1.cx",
            "1-2:1.c-1",
            "1-2:x.c",
            // The token of the layout before: <attempt>.<nonce>.
            "1-2:1.a3f09b21",
        ] {
            assert!(
                matches!(
                    decode_receipt(&Receipt::new(bad)),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unsupported_fields_are_refused() {
        let m = Message::new("x").with_priority(1);
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::Unsupported { .. })
        ));
        let m = Message::new("x").with_ordering_key("k");
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::Unsupported { .. })
        ));
        let m = Message::new("x").with_dedup_id("d");
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::Unsupported { .. })
        ));
        let m = Message::new(vec![0u8; 11]);
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::PayloadTooLarge { .. })
        ));
    }
}

//! Pull requests on long-lived inboxes.
//!
//! Each request is `no_wait` with an expiry: the server waits up to the
//! expiry for the first message, then sends what is available and ends the
//! request. Its answers go to `<inbox>.<n>`, and the handle stays
//! subscribed to `<inbox>.*`, so a message the server sends after the pop
//! stopped listening (a pop cut short, an answer that crossed an expiry) is
//! not lost to its lease: it waits in the subscription and the next pop
//! hands it out. async-nats re-subscribes the inbox after a reconnect; a
//! request lost with the old connection is replaced by the next one (each
//! waits at most [`MAX_PULL_WAIT`]). Pops of one handle that run at the
//! same time each take an inbox of their own from a small pool.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use async_nats::{Client, Message, StatusCode, Subscriber};
use bytes::Bytes;
use flextide_queue_core::{QueueError, Result};
use futures::{FutureExt, StreamExt};
use tokio::{sync::Mutex, time::Instant};

use crate::{BACKEND, error};

/// The longest one pull request waits.
pub(crate) const MAX_PULL_WAIT: Duration = Duration::from_secs(1);

/// How long past its expiry a request's end may be late before the pull
/// stops waiting for it (the answer was lost in a reconnect). Short: an
/// answer that is only late still lands in the inbox for the next pull.
const PULL_GRACE: Duration = Duration::from_millis(500);

/// A request older than this is forgotten: its answer will not come (it was
/// lost in a reconnect), and a lease started then would be over anyway.
const FORGET_AFTER: Duration = Duration::from_secs(10);

/// Most inboxes one handle keeps: as many pops can wait at once; more
/// queue up behind them.
const MAX_INBOXES: usize = 16;

/// The pulling side of one handle: a pool of [`Puller`]s, one per pop that
/// runs at the same time.
#[derive(Debug)]
pub(crate) struct PullPool {
    client: Client,
    stream: String,
    consumer: String,
    pullers: std::sync::Mutex<Vec<Arc<Puller>>>,
    turn: std::sync::atomic::AtomicUsize,
}

impl PullPool {
    pub(crate) fn new(client: Client, stream: &str, consumer: &str) -> PullPool {
        PullPool {
            client,
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            pullers: std::sync::Mutex::new(Vec::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A puller no other pop is using, a new one, or (all taken) one to
    /// wait for.
    fn pick(&self) -> Arc<Puller> {
        let mut pullers = self.pullers.lock().unwrap();
        if let Some(free) = pullers.iter().find(|p| !p.busy()) {
            return free.clone();
        }
        if pullers.len() < MAX_INBOXES {
            let p = Arc::new(Puller::new(
                self.client.clone(),
                &self.stream,
                &self.consumer,
            ));
            pullers.push(p.clone());
            return p;
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pullers[turn % pullers.len()].clone()
    }

    /// See [`Puller::pull`].
    pub(crate) async fn pull(&self, max: usize, wait: Duration) -> Result<(Pulled, Unanswered)> {
        self.pick().pull(max, wait).await
    }

    /// Deliveries received and never handed out, for `close` to give back.
    pub(crate) async fn unclaimed(&self) -> Vec<Message> {
        let pullers: Vec<Arc<Puller>> = self.pullers.lock().unwrap().clone();
        let mut out = Vec::new();
        for p in pullers {
            out.extend(p.unclaimed().await);
        }
        out
    }
}

#[derive(Debug, Default)]
struct State {
    sub: Option<Subscriber>,
    /// Deliveries received beyond what a pop asked for, with the time their
    /// request was sent.
    overflow: VecDeque<(Message, Instant)>,
    /// When each request still open was sent, by its number.
    open: HashMap<u64, Instant>,
    next: u64,
}

/// One inbox and the requests answered on it; one pop at a time.
#[derive(Debug)]
pub(crate) struct Puller {
    client: Client,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
    api: String,
    inbox: String,
    state: Mutex<State>,
}

/// Deliveries with the time their request was sent (their leases run from then).
pub(crate) type Pulled = Vec<(Message, Instant)>;

/// Whether a pull request got no answer at all, not even the status that
/// ends an expired request: the answer was lost in a reconnect, or nobody
/// serves the consumer (it was deleted: the server drops requests for a
/// consumer that does not exist, silently).
pub(crate) type Unanswered = bool;

impl Puller {
    pub(crate) fn new(client: Client, stream: &str, consumer: &str) -> Puller {
        Puller {
            api: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox: client.new_inbox(),
            client,
            state: Mutex::new(State::default()),
        }
    }

    /// The request a status answers (deliveries carry their stream subject,
    /// not the inbox, so only statuses can be matched to a request).
    fn busy(&self) -> bool {
        self.state.try_lock().is_err()
    }

    fn token(&self, m: &Message) -> Option<u64> {
        m.subject
            .as_str()
            .strip_prefix(self.inbox.as_str())?
            .strip_prefix('.')?
            .parse()
            .ok()
    }

    /// Takes up to `max` deliveries: those already waiting in the inbox,
    /// or else the answer of one request that waits up to `wait`.
    pub(crate) async fn pull(&self, max: usize, wait: Duration) -> Result<(Pulled, Unanswered)> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let now = Instant::now();
        state
            .open
            .retain(|_, at| now.saturating_duration_since(*at) < FORGET_AFTER);
        if state.sub.is_none() {
            let sub = self
                .client
                .subscribe(format!("{}.*", self.inbox))
                .await
                .map_err(|e| QueueError::connection(BACKEND, e))?;
            state.sub = Some(sub);
        }
        let mut got: Pulled = Vec::new();
        while got.len() < max {
            let Some(m) = state.overflow.pop_front() else {
                break;
            };
            got.push(m);
        }
        // Whatever arrived since the last pop.
        while got.len() < max {
            let Some(Some(m)) = state.sub.as_mut().and_then(|s| s.next().now_or_never()) else {
                break;
            };
            self.take(state, m, &mut got, max, None);
        }
        if !got.is_empty() {
            return Ok((got, false));
        }
        let token = state.next;
        state.next += 1;
        let started = Instant::now();
        state.open.insert(token, started);
        let mut body = format!("{{\"batch\":{max},\"no_wait\":true");
        if wait >= Duration::from_millis(1) {
            body.push_str(&format!(",\"expires\":{}", wait.as_nanos()));
        }
        body.push('}');
        self.client
            .publish_with_reply(
                self.api.clone(),
                format!("{}.{token}", self.inbox),
                Bytes::from(body),
            )
            .await
            .map_err(|e| error::map("pull", "", e))?;
        let until = started + wait + PULL_GRACE;
        let mut failure = None;
        while got.len() < max && state.open.contains_key(&token) {
            let Some(sub) = state.sub.as_mut() else { break };
            let next = tokio::time::timeout_at(until, sub.next()).await;
            let m = match next {
                Ok(Some(m)) => m,
                // The subscription ended (the client is closing).
                Ok(None) => {
                    state.sub = None;
                    break;
                }
                Err(_) => break,
            };
            if let Some(e) = self.take(state, m, &mut got, max, Some(token)) {
                failure = Some(e);
            }
        }
        if got.len() >= max {
            // A request served in full ends without a status.
            state.open.remove(&token);
        }
        let unanswered = got.is_empty() && state.open.contains_key(&token);
        match failure {
            Some(e) if got.is_empty() => Err(e),
            _ => Ok((got, unanswered)),
        }
    }

    /// Sorts one message of the inbox: a delivery goes to `got` (or the
    /// overflow past `max`); a status ends its request. A refusal of the
    /// current request (`409`) is returned.
    fn take(
        &self,
        state: &mut State,
        m: Message,
        got: &mut Pulled,
        max: usize,
        current: Option<u64>,
    ) -> Option<QueueError> {
        let token = self.token(&m);
        match m.status {
            None | Some(StatusCode::OK) => {
                // The lease runs from the request that brought it: the
                // current one, or (a late answer) the earliest still open.
                let started = current
                    .and_then(|t| state.open.get(&t).copied())
                    .or_else(|| state.open.values().min().copied())
                    .unwrap_or_else(Instant::now);
                if got.len() < max {
                    got.push((m, started));
                } else {
                    state.overflow.push_back((m, started));
                }
                None
            }
            Some(StatusCode::IDLE_HEARTBEAT) => None,
            Some(status) => {
                if let Some(t) = token {
                    state.open.remove(&t);
                }
                let refused = status != StatusCode::NOT_FOUND && status != StatusCode::TIMEOUT;
                (refused && token.is_some() && token == current).then(|| {
                    QueueError::backend_error(
                        BACKEND,
                        true,
                        format!(
                            "the server refused the pull request: {status} {}",
                            m.description.as_deref().unwrap_or_default()
                        ),
                    )
                })
            }
        }
    }

    /// Deliveries received and never handed out, for `close` to give back.
    pub(crate) async fn unclaimed(&self) -> Vec<Message> {
        let mut state = self.state.lock().await;
        let mut out: Vec<Message> = state.overflow.drain(..).map(|(m, _)| m).collect();
        if let Some(mut sub) = state.sub.take() {
            let _ = sub.unsubscribe().await;
            while let Some(Some(m)) = sub.next().now_or_never() {
                if m.status.is_none() || m.status == Some(StatusCode::OK) {
                    out.push(m);
                }
            }
        }
        out
    }
}

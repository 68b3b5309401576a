//! What a handler receives: one delivered message and its cancellation token.

use std::sync::Arc;

use flextide_queue_core::{Headers, Message, MessageId};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::HandlerError;

/// One delivery handed to a handler.
///
/// The worker settles it from the handler's result (ack on `Ok`, retry or
/// dead letter on `Err`); the handler never sees the receipt. The
/// [cancellation token](Task::cancellation_token) fires when the worker
/// loses the message's lease (another consumer may now hold it) or when a
/// graceful shutdown runs out of time: long handlers should watch it
/// (`tokio::select!` on [`Task::cancelled`]) and stop early.
#[derive(Debug)]
pub struct Task {
    pub(crate) message: Message,
    pub(crate) attempt: u32,
    pub(crate) lease_deadline: Instant,
    pub(crate) token: CancellationToken,
    pub(crate) queue: Arc<str>,
}

impl Task {
    /// Builds a task by hand, for testing a handler without a queue.
    pub fn new(message: Message, attempt: u32) -> Self {
        Task {
            message,
            attempt,
            lease_deadline: Instant::now() + std::time::Duration::from_secs(30),
            token: CancellationToken::new(),
            queue: Arc::from("test"),
        }
    }

    /// The message's id: the same on every delivery, the key for idempotence.
    pub fn id(&self) -> &MessageId {
        &self.message.id
    }

    /// 1 on the first delivery, +1 on each redelivery.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.message.headers
    }

    /// The whole message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message out of the task.
    pub fn into_message(self) -> Message {
        self.message
    }

    /// The queue the message came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// When the current lease ends unless the worker extends it (it does,
    /// on backends that can extend leases).
    pub fn lease_deadline(&self) -> Instant {
        self.lease_deadline
    }

    /// Decodes the JSON payload. A payload that does not decode is a
    /// [fatal](HandlerError::fatal) error, so `task.json()?` dead-letters it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.message.payload).map_err(HandlerError::fatal)
    }

    /// Cancelled when the lease is lost or shutdown's deadline passes.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.token
    }

    /// Completes when the task is cancelled; see [`Task::cancellation_token`].
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

//! The queue's connection and links, opened on first use and again after
//! the connection fails. Each connection is a new link generation: a
//! receipt names the generation whose receive link took the message, and
//! settlement goes over that link only (Service Bus settles a message on
//! the link that received it), so a receipt of an older generation is
//! stale.

use flextide_queue_core::Result;
use uuid::Uuid;

use super::ServiceBusQueue;
use crate::transport::{Connection, Management, Receiver, Sender, needs_reconnect};

/// The connection and the links made on it.
#[derive(Debug, Default)]
pub(crate) struct Links {
    generation: u64,
    conn: Option<Connection>,
    sender: Option<Sender>,
    receiver: Option<Receiver>,
    mgmt: Option<Management>,
    address: String,
}

impl Links {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    fn conn(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("with_links opens the connection first")
    }

    /// The send link to the queue.
    pub(crate) async fn sender(&mut self, entity: &str) -> Result<&mut Sender> {
        if self.sender.is_none() {
            let address = self.address.clone();
            let s = self.conn().sender(&address, entity).await?;
            self.sender = Some(s);
        }
        Ok(self.sender.as_mut().expect("set above"))
    }

    /// The peek-lock receive link on the queue.
    pub(crate) async fn receiver(&mut self, entity: &str) -> Result<&mut Receiver> {
        if self.receiver.is_none() {
            let address = self.address.clone();
            let r = self.conn().receiver(&address, entity).await?;
            self.receiver = Some(r);
        }
        Ok(self.receiver.as_mut().expect("set above"))
    }

    /// The receive link's name, if it is attached.
    pub(crate) fn receiver_name(&self) -> Option<String> {
        self.receiver.as_ref().map(|r| r.name().to_owned())
    }

    /// The queue's `$management` link.
    pub(crate) async fn management(&mut self, entity: &str) -> Result<&mut Management> {
        if self.mgmt.is_none() {
            let m = self.conn().management(entity).await?;
            self.mgmt = Some(m);
        }
        Ok(self.mgmt.as_mut().expect("set above"))
    }

    /// A receive link of its own (the dead-letter sub-queue), which the
    /// caller closes.
    pub(crate) async fn extra_receiver(&mut self, address: &str, entity: &str) -> Result<Receiver> {
        self.conn().receiver(address, entity).await
    }

    /// Closes everything; the next use opens a new connection.
    pub(crate) async fn close(&mut self) {
        if let Some(r) = self.receiver.take() {
            r.close().await;
        }
        if let Some(s) = self.sender.take() {
            s.close().await;
        }
        if let Some(m) = self.mgmt.take() {
            m.close().await;
        }
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
    }

    /// Forgets a dead connection without waiting for it.
    fn drop_all(&mut self) {
        self.receiver = None;
        self.sender = None;
        self.mgmt = None;
        self.conn = None;
    }
}

impl ServiceBusQueue {
    /// Runs `f` on the open links, opening them first if needed; a
    /// connection failure drops them so the next call reconnects (the
    /// error is retryable, so the worker tries again).
    pub(crate) async fn with_links<T>(
        &self,
        f: impl AsyncFnOnce(&mut Links) -> Result<T>,
    ) -> Result<T> {
        let mut links = self.links.lock().await;
        if links.conn.is_none() {
            let id = format!("ftq-{}-{}", self.name, Uuid::new_v4().simple());
            let conn = Connection::open(self.config.clone(), &id).await?;
            links.generation += 1;
            links.conn = Some(conn);
            links.address = self.address();
            let generation = links.generation;
            self.locks
                .lock()
                .expect("lock table poisoned")
                .forget_links_before(generation);
        }
        // Tokens due for renewal are put again before the links are used,
        // so Service Bus never detaches a link in use for an expired token.
        let result = match links.conn().refresh_tokens().await {
            Ok(()) => f(&mut links).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && needs_reconnect(e)
        {
            tracing::warn!(backend = crate::BACKEND, queue = %self.name, error = %e, "connection lost; reconnecting on next use");
            links.drop_all();
        }
        result
    }
}

//! `drop_queue`: deleting a queue, its dead-letter queue, its holding
//! queues and their index, with every message in them.
//!
//! The broker deletes a queue that does not exist without complaint, so
//! every name a queue may have created is deleted, pipelined on one channel
//! (one round trip for all of them), whether or not it exists: nothing is
//! probed. Names are deleted helpers first, the main queue next, the
//! dead-letter queue last, so a main queue never outlives its dead letters.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};
use futures::future::join_all;
use lapin::{Channel, Connection, options::QueueDeleteOptions, types::ShortString};

use super::{Inner, dlq_name, lock};
use crate::{
    Settings, delay,
    error::{self, is_not_found, timed, timed_raw},
    link::CloseWithin,
};

/// Every queue the queue `name` may have created, in deletion order.
fn names_of(name: &str) -> Vec<String> {
    let mut names = delay::all_helper_queues(name);
    names.push(name.to_owned());
    names.push(dlq_name(name));
    names
}

/// Deletes every queue of `name` through `connection`.
pub(crate) async fn delete_all(connection: &Connection, t: Duration, name: &str) -> Result<()> {
    let names = names_of(name);
    let channel = timed("channel.open", t, connection.create_channel()).await?;
    let results = join_all(names.iter().map(|queue| {
        timed_raw(
            "queue.delete",
            t,
            channel.queue_delete(
                ShortString::from(queue.as_str()),
                QueueDeleteOptions::default(),
            ),
        )
    }))
    .await;
    let mut missing = false;
    for result in results {
        match result? {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => missing = true,
            Err(e) => {
                channel.close_within(t).await;
                return Err(error::map(e));
            }
        }
    }
    if missing {
        // A broker that refuses to delete what does not exist (not
        // RabbitMQ, which is idempotent here) closed the channel at the
        // first miss: delete one by one, a fresh channel after each miss.
        return delete_one_by_one(connection, t, &names).await;
    }
    channel.close_within(t).await;
    Ok(())
}

async fn delete_one_by_one(connection: &Connection, t: Duration, names: &[String]) -> Result<()> {
    let mut channel: Channel = timed("channel.open", t, connection.create_channel()).await?;
    for queue in names {
        let deleted = timed_raw(
            "queue.delete",
            t,
            channel.queue_delete(
                ShortString::from(queue.as_str()),
                QueueDeleteOptions::default(),
            ),
        )
        .await?;
        if let Err(e) = deleted {
            if !is_not_found(&e) {
                return Err(error::map(e));
            }
            channel = timed("channel.open", t, connection.create_channel()).await?;
        }
    }
    channel.close_within(t).await;
    Ok(())
}

/// [`delete_all`] on a connection of its own (the client's `drop_queue`).
pub(crate) async fn delete_with_own_connection(settings: &Settings, name: &str) -> Result<()> {
    let t = settings.config.operation_timeout;
    let props = lapin::ConnectionProperties::default()
        .with_connection_name(format!("flextide-queue-rabbitmq/drop/{name}").into());
    let connection = crate::link::connect(settings, props).await?;
    let result = delete_all(&connection, t, name).await;
    connection.close_within(t).await;
    result
}

impl Inner {
    /// Drops the queue through this handle: no more deliveries to it, what
    /// it holds in process is forgotten (its receipts become stale), the
    /// queues are deleted, and the connection is replaced so nothing it
    /// held is settled or republished afterwards. A later write through
    /// this handle declares the queue again, empty.
    pub(super) async fn drop_queue(&self) -> Result<()> {
        let link = self.link().await?;
        {
            let _ctl = self.consumer_ctl.lock().await;
            self.stop_consumer(&link).await;
            // Leases still held are marked purged: never republished.
            let _ = lock(&self.state).purge();
        }
        lock(&self.buckets).clear();
        *lock(&self.probed_at) = None;
        link.forget_topology();
        let deleted = delete_all(&link.connection, self.t(), &self.name).await;
        // The consuming channel's unacknowledged deliveries belonged to the
        // deleted queue: start again on a new connection.
        self.mark_broken(&link);
        match deleted {
            Err(e @ QueueError::Timeout { .. }) => Err(e),
            other => other,
        }
    }
}

//! `release`: a delivery given back without counting its attempt, the same
//! way on every engine. Each dialect supplies one statement (bound by row
//! key and token) that makes the row visible now with its attempt count
//! lowered by one, or, for a row purged while leased, ends its lease so the
//! sweep drops it; it affects no row when the token no longer holds it.

use std::future::Future;

use flextide_queue_core::{Receipt, Result};
use tokio::sync::Notify;

use crate::{decode_receipt, stale};

/// Releases the delivery of `receipt`: `run(seq, token)` executes the
/// dialect's statement and returns the rows it affected. No row: the
/// receipt is stale (settled, or redelivered to someone else). A release
/// wakes the queue's waiting pops, since the message is ready at once.
pub async fn release<F, Fut>(
    backend: &'static str,
    receipt: &Receipt,
    wake: &Notify,
    run: F,
) -> Result<()>
where
    F: FnOnce(i64, String) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let (seq, token) = decode_receipt(backend, receipt)?;
    if run(seq, token.to_owned()).await? == 0 {
        return Err(stale(backend));
    }
    wake.notify_waiters();
    Ok(())
}

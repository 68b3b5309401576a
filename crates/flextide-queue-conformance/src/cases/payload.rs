//! Clause 7 (payloads): bodies round-trip byte for byte up to the backend's
//! limit, one byte more is refused before anything is sent, and headers and
//! the other message fields round-trip too.

use flextide_queue_core::{Message, QueueError};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case,
        support::{brief, fail, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

/// The largest payload the suite builds; a limit above it is not probed
/// byte-exactly (the probe would cost more memory than it proves).
pub const PROBE_CAP: usize = 64 * 1024 * 1024;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("payload::empty", empty),
        case!("payload::every_byte_value", every_byte_value),
        case!("payload::largest_round_trips", largest_round_trips),
        case!(
            "payload::one_byte_too_large_is_refused",
            one_byte_too_large_is_refused,
            |c, _| match c.max_payload_bytes {
                None => Some("no payload limit"),
                Some(m) if m > PROBE_CAP => Some("payload limit too large to probe"),
                Some(_) => None,
            }
        ),
        case!("payload::json_round_trips", json_round_trips),
        case!(
            "payload::unicode_headers_round_trip",
            unicode_headers_round_trip
        ),
        case!(
            "payload::message_fields_round_trip",
            message_fields_round_trip
        ),
        case!("payload::caller_id_round_trips", caller_id_round_trips),
    ]
}

/// Pushes `msg`, pops it and checks id, payload and headers; deletes it.
async fn round_trip(
    ctx: &Ctx,
    msg: Message,
) -> Result<flextide_queue_core::Delivery, crate::CaseError> {
    let q = ctx.queue().await?;
    let id = q.push(msg.clone()).await?;
    ensure_eq!(id, msg.id, "push returns the message's id");
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    ensure_eq!(d.message.id, msg.id);
    ensure!(
        d.message.payload == msg.payload,
        "payload differs: sent {} bytes, got {} bytes (first difference at byte {:?})",
        msg.payload.len(),
        d.message.payload.len(),
        msg.payload
            .iter()
            .zip(d.message.payload.iter())
            .position(|(a, b)| a != b)
    );
    ensure_eq!(d.message.headers, msg.headers, "headers");
    q.delete(&d.receipt).await?;
    Ok(d)
}

/// Clause 7: an empty payload round-trips.
pub async fn empty(ctx: &Ctx) -> CaseResult {
    round_trip(ctx, Message::new(Vec::new())).await.map(drop)
}

/// Clause 7: every byte value, in a body that is not UTF-8, round-trips.
pub async fn every_byte_value(ctx: &Ctx) -> CaseResult {
    let mut body: Vec<u8> = vec![0xff, 0xfe, 0x00, 0xc3];
    body.extend(0..=255u8);
    body.extend((0..=255u8).rev());
    round_trip(ctx, Message::new(body)).await.map(drop)
}

/// A body of `len` bytes that is not UTF-8 and not a repeated byte.
fn probe_body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) % 251) as u8 ^ 0x80)
        .collect()
}

/// Clause 7: a payload of exactly `max_payload_bytes` round-trips (or, with no
/// limit, one of the harness's `unlimited_payload_probe` bytes).
pub async fn largest_round_trips(ctx: &Ctx) -> CaseResult {
    let len = match ctx.capabilities().max_payload_bytes {
        Some(max) if max <= PROBE_CAP => max,
        _ => ctx.settings().unlimited_payload_probe,
    };
    round_trip(ctx, Message::new(probe_body(len)))
        .await
        .map(drop)
}

/// Clause 7: one byte over `max_payload_bytes` fails with `PayloadTooLarge`
/// and nothing is enqueued.
pub async fn one_byte_too_large_is_refused(ctx: &Ctx) -> CaseResult {
    let Some(max) = ctx.capabilities().max_payload_bytes else {
        return Err(fail("no payload limit"));
    };
    let q = ctx.queue().await?;
    match q.push(Message::new(probe_body(max + 1))).await {
        Err(QueueError::PayloadTooLarge { size, max: m, .. }) => {
            ensure_eq!(size, max + 1, "PayloadTooLarge size");
            ensure_eq!(m, max, "PayloadTooLarge max");
        }
        Err(e) => return Err(fail(format!("expected PayloadTooLarge, got error: {e}"))),
        Ok(id) => {
            return Err(fail(format!(
                "a payload of max + 1 bytes was accepted as {id}"
            )));
        }
    }
    pop_none(&q, brief(ctx), "the refused payload was not enqueued").await
}

/// Clause 7: `Message::json` and `Delivery::json` round-trip a value, with
/// its content type.
pub async fn json_round_trips(ctx: &Ctx) -> CaseResult {
    let value = serde_json::json!({
        "invoice": 17,
        "lines": [{"sku": "A-1", "qty": 2, "price": 9.5}],
        "note": "caf\u{e9} \u{1F9FE}",
        "paid": false,
        "refund": null
    });
    let d = round_trip(ctx, Message::json(&value)?).await?;
    ensure_eq!(d.json::<serde_json::Value>()?, value);
    ensure_eq!(d.message.content_type(), Some("application/json"));
    Ok(())
}

/// Clause 7: header values with non-ASCII text, quotes, separators and
/// empty values round-trip exactly, as does the trace context.
pub async fn unicode_headers_round_trip(ctx: &Ctx) -> CaseResult {
    let msg = Message::new("h")
        .with_header(
            "x-greeting",
            "gr\u{fc}\u{df}e \u{1F30D} \u{65E5}\u{672C}\u{8A9E}",
        )
        .with_header("x-quotes", "a\"b'c;--{}\\n=,:")
        .with_header("x-empty", "")
        .with_trace_context(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v".into()),
        );
    let d = round_trip(ctx, msg).await?;
    ensure_eq!(
        d.message.traceparent(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    ensure_eq!(d.message.tracestate(), Some("k=v"));
    Ok(())
}

/// Clause 7: priority, ordering key and dedup id round-trip where the
/// backend supports them.
pub async fn message_fields_round_trip(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    let mut msg = Message::new("fields");
    if caps.priority {
        msg = msg.with_priority(7);
    }
    if caps.ordering_key {
        msg = msg.with_ordering_key("customer-9");
    }
    if caps.dedup {
        let dedup = format!("dedup-{}", msg.id);
        msg = msg.with_dedup_id(dedup);
    }
    let d = round_trip(ctx, msg.clone()).await?;
    ensure_eq!(d.message.priority, msg.priority, "priority");
    ensure_eq!(d.message.ordering_key, msg.ordering_key, "ordering key");
    ensure_eq!(d.message.dedup_id, msg.dedup_id, "dedup id");
    ensure!(
        d.message.delay.is_none(),
        "a received message carries no delay"
    );
    Ok(())
}

/// Clause 1: an id chosen by the caller is the id delivered (handlers are
/// idempotent on it).
pub async fn caller_id_round_trips(ctx: &Ctx) -> CaseResult {
    let id = format!("order-17_{}", uuid::Uuid::new_v4().simple());
    let d = round_trip(ctx, Message::new("mine").with_id(id.as_str())).await?;
    ensure_eq!(d.message.id.as_str(), id.as_str());
    Ok(())
}

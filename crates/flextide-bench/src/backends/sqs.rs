//! SQS: not speed (the emulator is not representative) but client-side cost:
//! requests per message for push, pop and delete with batching on, counted
//! by an SDK interceptor, for the library, the worker and raw aws-sdk-sqs.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_sqs::{
    Client,
    config::{
        ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
        interceptors::BeforeTransmitInterceptorContextRef,
    },
    types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry},
};
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_sqs::{QueueKind, SqsClient};

use super::{Backend, env_or, lib_driver, options, queue_name};
use crate::{
    driver::{Driver, Handle, Popped, Res, expect_handles},
    plan::Plan,
    run::{Cell, Row},
    workloads::{self, Figure},
};

const ENDPOINT_VAR: &str = "FLEXTIDE_TEST_SQS_URL";
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";
/// The library's payload limit (SQS's 256 KiB less the base64 and envelope).
const MAX_PAYLOAD: usize = 190 * 1024;

/// Requests sent, by operation, since the last reset.
#[derive(Debug, Default)]
struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().expect("counter lock"))
    }
}

/// Counts every HTTP attempt by its `X-Amz-Target` operation.
#[derive(Debug, Clone)]
struct Counting(Arc<Counts>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "flextide-bench request counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown");
        let op = op.rsplit('.').next().unwrap_or(op).to_owned();
        *self
            .0
            .0
            .lock()
            .expect("counter lock")
            .entry(op)
            .or_default() += 1;
        Ok(())
    }
}

/// A counted SDK client shared by the library and the raw baseline.
pub(crate) struct Sqs {
    sdk: Client,
    client: SqsClient,
    counts: Arc<Counts>,
    endpoint: String,
}

impl std::fmt::Debug for Sqs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqs")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Sqs {
    pub(crate) async fn connect() -> Res<Self> {
        let endpoint = env_or(ENDPOINT_VAR, DEFAULT_ENDPOINT);
        let region = env_or("AWS_REGION", "us-east-1");
        let creds = Credentials::new(
            env_or("AWS_ACCESS_KEY_ID", "test"),
            env_or("AWS_SECRET_ACCESS_KEY", "test"),
            None,
            None,
            "bench",
        );
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new(region))
            .credentials_provider(creds)
            .load()
            .await;
        let counts = Arc::new(Counts::default());
        let conf = aws_sdk_sqs::config::Builder::from(&config)
            .interceptor(Counting(counts.clone()))
            .build();
        let sdk = Client::from_conf(conf);
        sdk.list_queues().max_results(1).send().await?;
        Ok(Sqs {
            client: SqsClient::from_sdk(sdk.clone()),
            sdk,
            counts,
            endpoint,
        })
    }
}

#[async_trait]
impl Backend for Sqs {
    fn name(&self) -> &'static str {
        "sqs"
    }

    async fn info(&self) -> Vec<(String, String)> {
        vec![
            (
                "server".into(),
                format!(
                    "emulator at {} (not representative of AWS: no speed figures)",
                    self.endpoint
                ),
            ),
            ("queue type".into(), "standard".into()),
        ]
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(
            self.client
                .ensure_queue(queue, QueueKind::Standard, options())
                .await?,
        ))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.client.delete_queue(queue, QueueKind::Standard).await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let url = self
            .sdk
            .create_queue()
            .queue_name(queue)
            .send()
            .await?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        Ok(Some(Arc::new(RawSqs {
            sdk: self.sdk.clone(),
            url,
        })))
    }

    fn max_payload(&self) -> Option<usize> {
        Some(MAX_PAYLOAD)
    }

    async fn special(&self, plan: &Plan) -> Option<Vec<Row>> {
        let mut rows = Vec::new();
        let n = plan.sqs_messages;
        let lib = self.requests(false, n, plan).await;
        let raw = self.requests(true, n, plan).await;
        let worker = self.worker_requests(n, plan).await;
        for (key, label) in [
            ("push", "push (push_batch of 100 / SendMessageBatch)"),
            ("pop", "pop (pop_batch 100 / ReceiveMessage)"),
            ("delete", "delete (delete_batch / DeleteMessageBatch)"),
            ("total", "total"),
        ] {
            let cell = |r: &Result<BTreeMap<String, f64>, String>| match r {
                Ok(m) => m.get(key).map_or(Cell::NotApplicable("none".into()), |v| {
                    Cell::Figure(per_message(*v, n))
                }),
                Err(e) => Cell::Error(e.clone()),
            };
            let mut row = Row::unit(
                format!("sqs-requests-{key}"),
                format!("SQS requests per message: {label}"),
                cell(&lib),
                cell(&raw),
                "req/msg",
            );
            print_row(&row);
            rows.push(row.clone());
            if key == "total" {
                row = Row::unit(
                    "sqs-requests-worker".into(),
                    "SQS requests per message: worker (fetch + ack batching) pop + delete".into(),
                    match &worker {
                        Ok(v) => Cell::Figure(per_message(*v, n)),
                        Err(e) => Cell::Error(e.clone()),
                    },
                    Cell::NotApplicable("worker only".into()),
                    "req/msg",
                );
                print_row(&row);
                rows.push(row);
            }
        }
        // W4 for information: long polling on the emulator.
        let samples = plan.idle_samples.min(100);
        let mut lat = Vec::new();
        for raw in [false, true] {
            let q = queue_name("sq-w4");
            let d = if raw {
                self.raw(&q).await.map(|d| d.expect("raw"))
            } else {
                lib_driver(Arc::new(self.clone_handle()), &q).await
            };
            lat.push(match d {
                Ok(d) => {
                    let r = workloads::idle_latency(d.clone(), samples, plan.payload).await;
                    let _ = d.cleanup().await;
                    r.map_or_else(|e| Cell::Error(e.to_string()), Cell::Figure)
                }
                Err(e) => Cell::Error(e.to_string()),
            });
        }
        let raw = lat.pop().expect("two cells");
        let lib = lat.pop().expect("two cells");
        let row = Row::latency(
            "w4".into(),
            format!("W4 idle push-to-pop (emulator), {samples} samples"),
            lib,
            raw,
        );
        print_row(&row);
        rows.push(row);
        Some(rows)
    }
}

fn print_row(r: &Row) {
    crate::run::print_row(r);
}

fn per_message(requests: f64, n: u64) -> Figure {
    Figure {
        messages: n,
        secs: 0.0,
        rate: requests,
        latency: None,
        fill_rate: None,
        note: None,
    }
}

impl Sqs {
    fn clone_handle(&self) -> Sqs {
        Sqs {
            sdk: self.sdk.clone(),
            client: self.client.clone(),
            counts: self.counts.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// Pushes `n` messages in batches of 100, then pops and deletes them all
    /// (one consumer, batches of up to 100): requests per message by kind.
    async fn requests(
        &self,
        raw: bool,
        n: u64,
        plan: &Plan,
    ) -> Result<BTreeMap<String, f64>, String> {
        let q = queue_name(if raw { "sq-raw" } else { "sq-lib" });
        let d = if raw {
            self.raw(&q).await.map(|d| d.expect("raw"))
        } else {
            lib_driver(Arc::new(self.clone_handle()), &q).await
        }
        .map_err(|e| e.to_string())?;
        let run = async {
            self.counts.take();
            workloads::fill(d.clone(), n, plan.payload, 100, 1).await?;
            let pushed = self.counts.take();
            // One consumer: it stops when the last message is deleted, so no
            // empty receive of the drained queue is counted (steady state).
            workloads::burn_down(d.clone(), n, 1, 100, plan.burn_cap).await?;
            let consumed = self.counts.take();
            Res::Ok((pushed, consumed))
        }
        .await;
        let _ = d.cleanup().await;
        let (pushed, consumed) = run.map_err(|e| e.to_string())?;
        Ok(summarize(&pushed, &consumed, n))
    }

    /// The worker (default fetch and ack batching) consuming `n` messages.
    async fn worker_requests(&self, n: u64, plan: &Plan) -> Result<f64, String> {
        let q = queue_name("sq-worker");
        let queue = self.library(&q).await.map_err(|e| e.to_string())?;
        let run = async {
            workloads::prefill(queue.clone(), n, plan.payload).await?;
            self.counts.take();
            let f = workloads::worker_run(queue.clone(), n, plan.worker_concurrency, plan.burn_cap)
                .await?;
            Res::Ok((f, self.counts.take()))
        }
        .await;
        let _ = self.drop_library(&q).await;
        let (f, counts) = run.map_err(|e| e.to_string())?;
        let total: u64 = counts.values().sum();
        Ok(total as f64 / f.messages.max(1) as f64)
    }
}

fn summarize(
    pushed: &BTreeMap<String, u64>,
    consumed: &BTreeMap<String, u64>,
    n: u64,
) -> BTreeMap<String, f64> {
    let n = n.max(1) as f64;
    let get = |m: &BTreeMap<String, u64>, ops: &[&str]| {
        ops.iter()
            .map(|o| m.get(*o).copied().unwrap_or(0))
            .sum::<u64>() as f64
    };
    let push = get(pushed, &["SendMessage", "SendMessageBatch"]);
    let pop = get(consumed, &["ReceiveMessage"]);
    let delete = get(consumed, &["DeleteMessage", "DeleteMessageBatch"]);
    let all = pushed.values().sum::<u64>() as f64 + consumed.values().sum::<u64>() as f64;
    BTreeMap::from([
        ("push".to_owned(), push / n),
        ("pop".to_owned(), pop / n),
        ("delete".to_owned(), delete / n),
        ("total".to_owned(), all / n),
    ])
}

struct RawSqs {
    sdk: Client,
    url: String,
}

#[async_trait]
impl Driver for RawSqs {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        for chunk in batch.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    // SQS bodies are text: base64, as the library does.
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b64(p))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .sdk
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await?;
            if !out.failed().is_empty() {
                return Err(format!("{} entries failed", out.failed().len()).into());
            }
        }
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let out = self
            .sdk
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs_f64().ceil().min(20.0) as i32)
            .visibility_timeout(options().lease.as_secs() as i32)
            .send()
            .await?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Popped {
                payload: unb64(m.body().unwrap_or_default()),
                handle: Handle::Text(m.receipt_handle().unwrap_or_default().to_owned()),
            })
            .collect())
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let handles = expect_handles(handles, |h| {
            if let Handle::Text(t) = h {
                Some(t)
            } else {
                None
            }
        })?;
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .sdk
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await?;
            if !out.failed().is_empty() {
                return Err(format!("{} deletes failed", out.failed().len()).into());
            }
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        self.sdk.delete_queue().queue_url(&self.url).send().await?;
        Ok(())
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (the raw client needs text bodies, like the library).
fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(text: &str) -> Bytes {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = B64.iter().position(|&b| b == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"\x00\xff\x10hello"] {
            assert_eq!(&unb64(&b64(data))[..], data);
        }
        assert_eq!(b64(b"ab"), "YWI=");
    }
}

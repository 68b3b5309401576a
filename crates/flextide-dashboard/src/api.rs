//! The JSON API: the same operations as the pages (and as the `flextide`
//! command, through `flextide_admin`), documented in docs/dashboard.md.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State as AxState},
    response::{IntoResponse, Response},
};
use flextide_admin::StatsView;
use flextide_queue_core::{MessageId, Replay};
use serde::{Deserialize, Serialize};

use crate::{
    error::{AppError, op},
    state::{Entry, State},
};

/// Most messages or dead letters one list returns.
pub(crate) const MAX_LIST: usize = 1000;

/// One queue's counts and rates, as the overview and the API show them.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) name: String,
    pub(crate) backend: &'static str,
    #[serde(flatten)]
    pub(crate) stats: Option<StatsView>,
    pub(crate) processed_per_min: Option<f64>,
    pub(crate) failed_per_min: Option<f64>,
    /// "counted" (worker counters) or "estimated" (from the counts).
    pub(crate) rates: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

pub(crate) async fn summary(entry: &Entry) -> Summary {
    let stats = op(flextide_admin::stats(&*entry.queue)).await;
    let (processed, failed, counted) = {
        let h = entry.history.lock().unwrap();
        let (p, f) = h.latest_rates();
        (p, f, h.counted)
    };
    let (stats, error) = match stats {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.message)),
    };
    Summary {
        name: entry.name.clone(),
        backend: entry.queue.backend_name(),
        stats,
        processed_per_min: processed,
        failed_per_min: failed,
        rates: if counted { "counted" } else { "estimated" },
        error,
    }
}

pub(crate) async fn summaries(state: &State) -> Vec<Summary> {
    futures::future::join_all(state.queues.iter().map(summary)).await
}

pub(crate) fn entry<'a>(state: &'a State, name: &str) -> Result<&'a Entry, AppError> {
    state
        .entry(name)
        .ok_or_else(|| AppError::unknown_queue(name))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    limit: Option<usize>,
}

impl Limit {
    fn get(&self, default: usize) -> usize {
        self.limit.unwrap_or(default).min(MAX_LIST)
    }
}

pub(crate) async fn list_queues(AxState(state): AxState<Arc<State>>) -> Response {
    Json(serde_json::json!({ "queues": summaries(&state).await })).into_response()
}

pub(crate) async fn csrf(AxState(state): AxState<Arc<State>>) -> Response {
    Json(serde_json::json!({ "csrf": state.csrf, "read_only": state.read_only })).into_response()
}

pub(crate) async fn queue(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
) -> Response {
    match entry(&state, &name) {
        Ok(e) => Json(summary(e).await).into_response(),
        Err(e) => e.json(),
    }
}

pub(crate) async fn history(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
) -> Response {
    match entry(&state, &name) {
        Ok(e) => {
            let h = e.history.lock().unwrap();
            Json(serde_json::json!({
                "queue": name,
                "sample_every_seconds": state.sample_every.as_secs_f64(),
                "rates": if h.counted { "counted" } else { "estimated" },
                "samples": h.samples(),
            }))
            .into_response()
        }
        Err(e) => e.json(),
    }
}

/// Answers an API call: its JSON, or its error as JSON with its status.
async fn respond(result: impl Future<Output = Result<serde_json::Value, AppError>>) -> Response {
    match result.await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.json(),
    }
}

pub(crate) async fn messages(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    respond(async {
        let e = entry(&state, &name)?;
        let waiting = op(flextide_admin::peek(&*e.queue, limit.get(20))).await?;
        let list: Vec<_> = waiting.iter().map(flextide_admin::message_json).collect();
        Ok(serde_json::json!({ "messages": list }))
    })
    .await
}

pub(crate) async fn dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    respond(async {
        let e = entry(&state, &name)?;
        let dead = op(async { Ok(e.queue.dead_letters(limit.get(50)).await?) }).await?;
        let list: Vec<_> = dead.iter().map(flextide_admin::dead_letter_json).collect();
        Ok(serde_json::json!({ "dead_letters": list }))
    })
    .await
}

/// The body of a replay: exactly one of `ids`, `oldest`, `all`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayBody {
    #[serde(default)]
    ids: Vec<String>,
    oldest: Option<usize>,
    #[serde(default)]
    all: bool,
}

pub(crate) fn which(
    ids: Vec<String>,
    oldest: Option<usize>,
    all: bool,
) -> Result<Replay, AppError> {
    match (ids.is_empty(), oldest, all) {
        (false, None, false) => Ok(Replay::Ids(ids.into_iter().map(MessageId::new).collect())),
        (true, Some(n), false) => Ok(Replay::Oldest(n)),
        (true, None, true) => Ok(Replay::All),
        _ => Err(AppError::bad_request(
            "say which dead letters to replay: exactly one of ids, oldest or all",
        )),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, AppError> {
    serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("the body is not the expected JSON: {e}")))
}

pub(crate) async fn replay(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond(async {
        let e = entry(&state, &name)?;
        let b: ReplayBody = json_body(&body)?;
        let which = which(b.ids, b.oldest, b.all)?;
        let out = op(flextide_admin::replay(&*e.queue, which)).await?;
        let missing: Vec<&str> = out.missing.iter().map(MessageId::as_str).collect();
        Ok(serde_json::json!({ "replayed": out.replayed, "missing": missing }))
    })
    .await
}

/// The body of a delete: the ids of the dead letters to delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteBody {
    ids: Vec<String>,
}

/// Deletes chosen dead letters for good (`ids` not empty); the page's
/// delete buttons and the API share it.
pub(crate) async fn delete_chosen(
    entry: &Entry,
    ids: Vec<String>,
) -> Result<flextide_admin::DeleteOutcome, AppError> {
    if ids.is_empty() {
        return Err(AppError::bad_request(
            "say which dead letters to delete: ids",
        ));
    }
    let ids: Vec<MessageId> = ids.into_iter().map(MessageId::new).collect();
    op(flextide_admin::delete_dead_letters(&*entry.queue, &ids)).await
}

pub(crate) async fn delete_dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond(async {
        let e = entry(&state, &name)?;
        let b: DeleteBody = json_body(&body)?;
        let out = delete_chosen(e, b.ids).await?;
        Ok(serde_json::json!({ "deleted": out.deleted, "not_found": out.not_found }))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeBody {
    confirm: String,
}

/// A purge goes ahead only when it names the queue it empties.
pub(crate) fn confirmed(entry: &Entry, confirm: &str) -> Result<(), AppError> {
    if confirm.trim() == entry.name {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "to purge, confirm with the queue's name ({})",
            entry.name
        )))
    }
}

/// What a purge empties. The pages and the API run it the same way, once
/// [`confirmed`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purge {
    /// Every waiting message (dead letters are kept).
    Waiting,
    /// Every dead letter.
    DeadLetters,
}

impl Purge {
    /// Purges and returns how many went.
    pub(crate) async fn run(self, entry: &Entry) -> Result<u64, AppError> {
        let q = &*entry.queue;
        op(async {
            Ok(match self {
                Purge::Waiting => q.purge().await?,
                Purge::DeadLetters => q.purge_dead_letters().await?,
            })
        })
        .await
    }
}

async fn purge_what(state: &State, name: &str, body: &Bytes, what: Purge) -> Response {
    respond(async {
        let e = entry(state, name)?;
        let b: PurgeBody = json_body(body)?;
        confirmed(e, &b.confirm)?;
        let n = what.run(e).await?;
        Ok(serde_json::json!({ "purged": n }))
    })
    .await
}

pub(crate) async fn purge_dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    purge_what(&state, &name, &body, Purge::DeadLetters).await
}

pub(crate) async fn purge(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    purge_what(&state, &name, &body, Purge::Waiting).await
}

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

pub(crate) async fn messages(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let waiting = op(flextide_admin::peek(&*e.queue, limit.get(20))).await?;
        let list: Vec<_> = waiting.iter().map(flextide_admin::message_json).collect();
        Ok::<_, AppError>(Json(serde_json::json!({ "messages": list })))
    };
    result
        .await
        .map_or_else(AppError::json, IntoResponse::into_response)
}

pub(crate) async fn dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let dead = op(async { Ok(e.queue.dead_letters(limit.get(50)).await?) }).await?;
        let list: Vec<_> = dead.iter().map(flextide_admin::dead_letter_json).collect();
        Ok::<_, AppError>(Json(serde_json::json!({ "dead_letters": list })))
    };
    result
        .await
        .map_or_else(AppError::json, IntoResponse::into_response)
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
    let result = async {
        let e = entry(&state, &name)?;
        let b: ReplayBody = json_body(&body)?;
        let which = which(b.ids, b.oldest, b.all)?;
        let out = op(flextide_admin::replay(&*e.queue, which)).await?;
        let missing: Vec<&str> = out.missing.iter().map(MessageId::as_str).collect();
        Ok::<_, AppError>(Json(
            serde_json::json!({ "replayed": out.replayed, "missing": missing }),
        ))
    };
    result
        .await
        .map_or_else(AppError::json, IntoResponse::into_response)
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

pub(crate) async fn purge_dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let b: PurgeBody = json_body(&body)?;
        confirmed(e, &b.confirm)?;
        let n = op(async { Ok(e.queue.purge_dead_letters().await?) }).await?;
        Ok::<_, AppError>(Json(serde_json::json!({ "purged": n })))
    };
    result
        .await
        .map_or_else(AppError::json, IntoResponse::into_response)
}

pub(crate) async fn purge(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let b: PurgeBody = json_body(&body)?;
        confirmed(e, &b.confirm)?;
        let n = op(async { Ok(e.queue.purge().await?) }).await?;
        Ok::<_, AppError>(Json(serde_json::json!({ "purged": n })))
    };
    result
        .await
        .map_or_else(AppError::json, IntoResponse::into_response)
}

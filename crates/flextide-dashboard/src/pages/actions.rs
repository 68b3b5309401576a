//! The forms' POST handlers: replay, delete and the two purges, then back
//! to the queue page with a notice (303, so a reload does not repeat them).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State as AxState},
    response::{IntoResponse, Redirect, Response},
};

use super::confirm::page;
use crate::{
    api::{Purge, confirmed, delete_chosen, entry, which},
    error::{AppError, op},
    state::State,
};

struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn back(state: &State, name: &str, query: String) -> Response {
    Redirect::to(&format!("{}?{query}", super::queue_href(state, name))).into_response()
}

pub(crate) async fn replay(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let form = Form::parse(&body);
        // The row's button names one message; else the checked boxes, or all.
        let which = if form.get("all").is_some() && form.get("one").is_none() {
            which(Vec::new(), None, true)?
        } else {
            which(chosen(&form)?, None, false)?
        };
        let out = op(flextide_admin::replay(&*e.queue, which)).await?;
        Ok(back(
            &state,
            &name,
            format!(
                "done=replayed&n={}&missing={}",
                out.replayed,
                out.missing.len()
            ),
        ))
    };
    result.await.unwrap_or_else(|e: AppError| e.page(&state))
}

/// The row's button names one dead letter (`one`); else the checked boxes.
fn chosen(form: &Form) -> Result<Vec<String>, AppError> {
    if let Some(one) = form.get("one") {
        return Ok(vec![one.to_owned()]);
    }
    let ids = form.all("id");
    if ids.is_empty() {
        return Err(AppError::bad_request("no dead letter was selected"));
    }
    Ok(ids)
}

pub(crate) async fn delete(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let e = entry(&state, &name)?;
        let out = delete_chosen(e, chosen(&Form::parse(&body))?).await?;
        Ok(back(
            &state,
            &name,
            format!("done=deleted&n={}&missing={}", out.deleted, out.not_found),
        ))
    };
    result.await.unwrap_or_else(|e: AppError| e.page(&state))
}

pub(crate) async fn purge(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    purge_what(&state, &name, &body, Purge::Waiting).await
}

pub(crate) async fn purge_dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    purge_what(&state, &name, &body, Purge::DeadLetters).await
}

async fn purge_what(state: &State, name: &str, body: &[u8], what: Purge) -> Response {
    let e = match entry(state, name) {
        Ok(e) => e,
        Err(err) => return err.page(state),
    };
    let form = Form::parse(body);
    if let Err(err) = confirmed(e, form.get("confirm").unwrap_or_default()) {
        return page(state, name, what, Some(&err.message)).await;
    }
    let done = match what {
        Purge::Waiting => "purged",
        Purge::DeadLetters => "dlq-purged",
    };
    match what.run(e).await {
        Ok(n) => back(state, name, format!("done={done}&n={n}")),
        Err(err) => err.page(state),
    }
}

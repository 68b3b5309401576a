//! A failed request: its status and a message that says what happened,
//! served as JSON to the API and as a page to a browser.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use flextide_queue_core::QueueError;

use crate::state::State;

#[derive(Debug)]
pub(crate) struct AppError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl AppError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub(crate) fn bad_request(what: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, what)
    }

    pub(crate) fn unknown_queue(name: &str) -> Self {
        Self::not_found(format!("no queue named {name} in this dashboard"))
    }

    /// A failed operation: 501 for one the backend lacks, 504 for one that
    /// took too long, 502 for any other backend failure.
    pub(crate) fn from_op(e: flextide_admin::Error) -> Self {
        let status = match e.downcast_ref::<QueueError>() {
            Some(QueueError::Unsupported { .. }) => StatusCode::NOT_IMPLEMENTED,
            Some(QueueError::QueueNotFound { .. }) => StatusCode::NOT_FOUND,
            Some(_) => StatusCode::BAD_GATEWAY,
            // flextide_admin's own refusals (a backend that cannot peek).
            None => StatusCode::NOT_IMPLEMENTED,
        };
        Self::new(status, e.to_string())
    }

    pub(crate) fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the backend did not answer within {}s",
                crate::history::STATS_TIMEOUT.as_secs()
            ),
        )
    }

    pub(crate) fn json(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }

    pub(crate) fn page(self, state: &State) -> Response {
        let body = crate::pages::error_page(state, self.status, &self.message);
        (self.status, body).into_response()
    }
}

/// Runs an operation with the backend timeout, mapping its failures.
pub(crate) async fn op<T>(
    fut: impl Future<Output = Result<T, flextide_admin::Error>>,
) -> Result<T, AppError> {
    match tokio::time::timeout(crate::history::STATS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(AppError::from_op(e)),
        Err(_) => Err(AppError::timeout()),
    }
}

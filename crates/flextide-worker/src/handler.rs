//! Handlers written as plain async functions.

use std::{
    fmt,
    future::Future,
    task::{Context, Poll},
};

use tower::Service;

use crate::{HandlerError, Task};

/// Turns an async function of a [`Task`] into a handler (a
/// `tower::Service<Task>`), so it can be wrapped in tower layers.
///
/// The error type is fixed to [`HandlerError`] so closures need no type
/// annotations; use `tower::service_fn` for other error types.
///
/// ```
/// use flextide_worker::{handler_fn, HandlerError, Task};
/// let handler = handler_fn(|task: Task| async move {
///     let n: u64 = task.json()?; // a payload that is not a number is fatal
///     println!("got {n}");
///     Ok::<_, HandlerError>(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut, R>(f: F) -> HandlerFn<F>
where
    F: FnMut(Task) -> Fut,
    Fut: Future<Output = Result<R, HandlerError>>,
{
    HandlerFn { f }
}

/// The service made by [`handler_fn`].
#[derive(Clone, Copy)]
pub struct HandlerFn<F> {
    f: F,
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F, Fut, R> Service<Task> for HandlerFn<F>
where
    F: FnMut(Task) -> Fut,
    Fut: Future<Output = Result<R, HandlerError>>,
{
    type Response = R;
    type Error = HandlerError;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task) -> Self::Future {
        (self.f)(task)
    }
}

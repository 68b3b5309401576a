//! `flextide dashboard`: the web dashboard (crate flextide-dashboard) over
//! the queues the environment names, until Ctrl-C.

use std::{net::SocketAddr, process::ExitCode};

use clap::Args;

use super::Error;

/// The variable holding the token (never a flag, which `ps` would show).
#[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
const TOKEN_VAR: &str = "QUEUE_DASHBOARD_TOKEN";

#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. An address other than loopback needs a token in
    /// QUEUE_DASHBOARD_TOKEN. Port 0 picks a free one (printed).
    #[arg(long, default_value = "127.0.0.1:9494", env = "QUEUE_DASHBOARD_LISTEN")]
    listen: SocketAddr,
    /// The queues to show, comma separated (default: every queue the
    /// backend lists, else QUEUE_NAME).
    #[arg(long, value_delimiter = ',', env = "QUEUE_NAMES")]
    queues: Vec<String>,
    /// Change nothing: no replay, no purge.
    #[arg(long)]
    read_only: bool,
    /// Serve Prometheus metrics at /metrics.
    #[arg(long)]
    metrics: bool,
}

#[cfg(not(feature = "dashboard"))]
pub(crate) async fn run(_queue: Option<String>, _args: DashboardArgs) -> Result<ExitCode, Error> {
    Err("this flextide was built without the dashboard: build it with `--features dashboard` (or `full`)".into())
}

#[cfg(feature = "dashboard")]
pub(crate) async fn run(queue: Option<String>, args: DashboardArgs) -> Result<ExitCode, Error> {
    use std::sync::Arc;

    use flextide_queue::{QueueError, QueueProvider};

    let config = super::config(queue)?;
    if config.backend == "memory" {
        return Err("QUEUE_PROVIDER=memory keeps queues inside one process: the dashboard would see none of another program's. Mount flextide_dashboard's router in that program instead, or choose a backend that keeps messages".into());
    }
    let token = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let loopback = args.listen.ip().is_loopback();
    if !loopback && token.is_none() {
        return Err(format!(
            "listening on {} lets other machines in: set {TOKEN_VAR} to a long random token (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1",
            args.listen
        )
        .into());
    }
    let connector = flextide_queue::registry().by_name(&config.backend)?.clone();
    let mut names: Vec<String> = args
        .queues
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        names = match connector.list_queues(&config.url).await {
            Ok(listed) if !listed.is_empty() => listed,
            Ok(_) | Err(QueueError::Unsupported { .. }) => vec![config.queue_name.clone()],
            Err(e) => return Err(e.into()),
        };
    }
    let mut builder = flextide_dashboard::Dashboard::builder()
        .read_only(args.read_only)
        .metrics(args.metrics)
        .loopback_only(token.is_none());
    if let Some(token) = token {
        builder = builder.token(token);
    }
    let mut opened: Vec<Arc<dyn QueueProvider>> = Vec::new();
    for name in &names {
        flextide_queue::validate_queue_name(name)?;
        // Looking only: opened without creating anything.
        let q = connector
            .open_existing(&config.url, name, config.options.clone())
            .await
            .map_err(|e| format!("opening queue {name}: {e}"))?;
        builder = builder.queue(name.clone(), q.clone());
        opened.push(q);
    }
    let dashboard = builder.build()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "dashboard of {} ({}) at http://{addr}/ — Ctrl-C stops it",
        names.join(", "),
        config.describe()
    );
    let served = dashboard
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    for q in &opened {
        super::close(&**q).await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

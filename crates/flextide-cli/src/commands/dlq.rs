//! `flextide dlq list | replay | delete | purge`

use std::process::ExitCode;

use clap::Subcommand;
use flextide_queue::{MessageId, QueueProvider, Replay};

use super::Error;

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, oldest first, with reason and attempts (JSON lines).
    List {
        /// How many to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
    },
    /// Put dead letters back on the queue with their attempts reset.
    Replay {
        /// Replay every dead letter.
        #[arg(long, conflicts_with_all = ["oldest", "ids"])]
        all: bool,
        /// Replay the N oldest.
        #[arg(long, value_name = "N", conflicts_with = "ids")]
        oldest: Option<usize>,
        /// Replay these message ids.
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
    },
    /// Delete the dead letters with these message ids, for good.
    Delete {
        /// Message ids (as `dlq list` shows them).
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Delete every dead letter (asks for --yes).
    Purge {
        /// Really delete them.
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) async fn run(queue: &dyn QueueProvider, cmd: DlqCommand) -> Result<ExitCode, Error> {
    match cmd {
        DlqCommand::List { limit } => {
            let dead = queue.dead_letters(limit).await?;
            for d in &dead {
                println!("{}", flextide_admin::dead_letter_json(d));
            }
            if dead.is_empty() {
                eprintln!("no dead letters in {}", queue.queue_name());
            }
        }
        DlqCommand::Replay { all, oldest, ids } => {
            let which = match (all, oldest, ids.is_empty()) {
                (true, _, _) => Replay::All,
                (_, Some(n), _) => Replay::Oldest(n),
                (_, None, false) => Replay::Ids(ids.into_iter().map(MessageId::new).collect()),
                _ => {
                    return Err(
                        "say which dead letters to replay: --all, --oldest N or --id ID".into(),
                    );
                }
            };
            // Says which asked-for ids are not dead letters, rather than
            // quietly replaying fewer.
            let flextide_admin::ReplayOutcome {
                replayed: n,
                missing,
                ..
            } = flextide_admin::replay(queue, which).await?;
            println!("replayed {n} dead letters onto {}", queue.queue_name());
            if !missing.is_empty() {
                let list: Vec<&str> = missing.iter().map(MessageId::as_str).collect();
                eprintln!(
                    "not found among the dead letters of {}: {}",
                    queue.queue_name(),
                    list.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        DlqCommand::Delete { ids } => {
            let ids: Vec<MessageId> = ids.into_iter().map(MessageId::new).collect();
            let out = flextide_admin::delete_dead_letters(queue, &ids).await?;
            println!(
                "deleted {} dead letters from {}",
                out.deleted,
                queue.queue_name()
            );
            if out.not_found > 0 {
                eprintln!(
                    "{} of the ids were not among the dead letters of {}",
                    out.not_found,
                    queue.queue_name()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        DlqCommand::Purge { yes } => {
            if !yes {
                return Err("this deletes every dead letter for good; add --yes to confirm".into());
            }
            let n = queue.purge_dead_letters().await?;
            println!("purged {n} dead letters from {}", queue.queue_name());
        }
    }
    Ok(ExitCode::SUCCESS)
}

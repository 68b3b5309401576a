//! What the three SQL backends' queue handles have in common as
//! `QueueProvider`s and `Connector`s: the capabilities of a table-backed
//! queue, the delegating trait impl, and the connector shape.

use flextide_queue_core::Capabilities;

use crate::{MAX_DELAY, Migration};

/// The queues of the shared tables: every name with a message or a dead
/// letter, sorted. The same text on every engine.
pub const LIST_QUEUES_SQL: &str = "SELECT queue FROM flextide_queue_messages \
     UNION SELECT queue FROM flextide_queue_dead_letters ORDER BY queue";

/// The queue names of the shared tables ([`LIST_QUEUES_SQL`]) through
/// `pool`, which is closed afterwards: `Connector::list_queues` of every
/// SQL backend, on a pool it opened for the call.
pub async fn list_queues<DB>(
    pool: sqlx::Pool<DB>,
    map: fn(sqlx::Error) -> flextide_queue_core::QueueError,
) -> flextide_queue_core::Result<Vec<String>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
{
    let names = sqlx::query_scalar::<DB, String>(LIST_QUEUES_SQL)
        .fetch_all(&pool)
        .await
        .map_err(map);
    pool.close().await;
    names
}

/// The steps of `migrations` whose versions were just applied, as
/// `"VERSION NAME"` lines, for `Connector::migrate`.
pub fn applied_steps(migrations: &[Migration], versions: &[i64]) -> Vec<String> {
    versions
        .iter()
        .map(|v| match migrations.iter().find(|m| m.version == *v) {
            Some(m) => format!("{v} {}", m.name),
            None => v.to_string(),
        })
        .collect()
}

/// What a queue stored in SQL tables supports: FIFO by sequence, ordering
/// keys, priorities, delays, leases with fencing tokens, dead letters (and
/// deleting chosen ones), exact counts, peek and purge, release, unique
/// pushes ([`dedup`](crate::dedup); each backend adds the queue's
/// `dedup_window`). Delays up to [`MAX_DELAY`]
/// (100 years), which every engine refuses past. No other limits: an engine
/// that has them sets them with `Capabilities { max_batch: Some(..), ..CAPABILITIES }`.
pub const CAPABILITIES: Capabilities = Capabilities {
    fifo: true,
    ordering_key: true,
    priority: true,
    delay: true,
    max_delay: Some(MAX_DELAY),
    max_payload_bytes: None,
    max_batch: None,
    extend_lease: true,
    fenced_receipts: true,
    dead_letters: true,
    dedup: true,
    dedup_window: None,
    delete_dead_letters: true,
    exact_stats: true,
    peek: true,
    purge: true,
    release: true,
    drop_queue: true,
    blind_stats: false,
};

/// Implements `QueueProvider` for a SQL queue handle by handing each
/// operation to the backend's file of its job: `push::{push_unique, push_batch}`
/// (`push` is `push_unique` keeping the id),
/// `claim::pop_batch`, `settle::{delete, delete_batch, nack, extend,
/// dead_letter}`, `release::release`, `dead::{dead_letters, replay_dead_letters,
/// delete_dead_letters, purge_dead_letters}` and `stats::{peek, purge, stats}`, each taking the
/// handle first, and `drop_queue` to the handle's inherent `drop_queue`
/// (every row of the queue: messages, dead letters, dedup ids). The backends keep one layout so that this list is the same
/// for all three; anything beyond it (`close`) is added after the fields.
///
/// ```ignore
/// flextide_queue_sql::queue_provider! {
///     MySqlQueue in crate {
///         backend: BACKEND,
///         name: |q| &q.name,
///         capabilities: |q| Capabilities { max_batch: Some(MAX_BATCH), ..CAPABILITIES },
///     }
/// }
/// ```
#[macro_export]
macro_rules! queue_provider {
    (
        $queue:ident in $jobs:tt {
            backend: $backend:expr,
            name: |$n:ident| $name:expr,
            capabilities: |$c:ident| $caps:expr $(,)?
        }
        $($extra:item)*
    ) => {
        #[$crate::__private::async_trait]
        impl $crate::__private::QueueProvider for $queue {
            fn queue_name(&self) -> &str {
                let $n = self;
                $name
            }

            fn capabilities(&self) -> $crate::__private::Capabilities {
                let $c = self;
                $caps
            }

            fn backend_name(&self) -> &'static str {
                $backend
            }

            async fn push(
                &self,
                message: $crate::__private::Message,
            ) -> $crate::__private::Result<$crate::__private::MessageId> {
                $jobs::push::push_unique(self, message)
                    .await
                    .map($crate::__private::Pushed::into_id)
            }

            async fn push_unique(
                &self,
                message: $crate::__private::Message,
            ) -> $crate::__private::Result<$crate::__private::Pushed> {
                $jobs::push::push_unique(self, message).await
            }

            async fn push_batch(
                &self,
                messages: ::std::vec::Vec<$crate::__private::Message>,
            ) -> $crate::__private::Result<::std::vec::Vec<$crate::__private::MessageId>> {
                $jobs::push::push_batch(self, messages).await
            }

            async fn pop_batch(
                &self,
                max: usize,
                wait: ::std::time::Duration,
            ) -> $crate::__private::Result<::std::vec::Vec<$crate::__private::Delivery>> {
                $jobs::claim::pop_batch(self, max, wait).await
            }

            async fn delete(
                &self,
                receipt: &$crate::__private::Receipt,
            ) -> $crate::__private::Result<()> {
                $jobs::settle::delete(self, receipt).await
            }

            async fn delete_batch(
                &self,
                receipts: &[$crate::__private::Receipt],
            ) -> $crate::__private::Result<()> {
                $jobs::settle::delete_batch(self, receipts).await
            }

            async fn nack(
                &self,
                receipt: &$crate::__private::Receipt,
                delay: ::std::time::Duration,
            ) -> $crate::__private::Result<()> {
                $jobs::settle::nack(self, receipt, delay).await
            }

            async fn release(
                &self,
                receipt: &$crate::__private::Receipt,
            ) -> $crate::__private::Result<()> {
                $jobs::release::release(self, receipt).await
            }

            async fn extend(
                &self,
                receipt: &$crate::__private::Receipt,
                by: ::std::time::Duration,
            ) -> $crate::__private::Result<()> {
                $jobs::settle::extend(self, receipt, by).await
            }

            async fn dead_letter(
                &self,
                receipt: &$crate::__private::Receipt,
                reason: &str,
            ) -> $crate::__private::Result<()> {
                $jobs::settle::dead_letter(self, receipt, reason).await
            }

            async fn dead_letters(
                &self,
                limit: usize,
            ) -> $crate::__private::Result<::std::vec::Vec<$crate::__private::DeadLetter>> {
                $jobs::dead::dead_letters(self, limit).await
            }

            async fn replay_dead_letters(
                &self,
                which: $crate::__private::Replay,
            ) -> $crate::__private::Result<u64> {
                $jobs::dead::replay_dead_letters(self, which).await
            }

            async fn delete_dead_letters(
                &self,
                ids: &[$crate::__private::MessageId],
            ) -> $crate::__private::Result<u64> {
                $jobs::dead::delete_dead_letters(self, ids).await
            }

            async fn purge_dead_letters(&self) -> $crate::__private::Result<u64> {
                $jobs::dead::purge_dead_letters(self).await
            }

            async fn peek(
                &self,
                limit: usize,
            ) -> $crate::__private::Result<::std::vec::Vec<$crate::__private::Message>> {
                $jobs::stats::peek(self, limit).await
            }

            async fn purge(&self) -> $crate::__private::Result<u64> {
                $jobs::stats::purge(self).await
            }

            async fn drop_queue(&self) -> $crate::__private::Result<()> {
                // The handle's inherent `drop_queue` (it returns the rows removed).
                $queue::drop_queue(self).await.map(|_| ())
            }

            async fn stats(&self) -> $crate::__private::Result<$crate::__private::QueueStats> {
                $jobs::stats::stats(self).await
            }

            $($extra)*
        }
    };
}

/// Implements `Connector` for a SQL backend's unit struct. Every SQL
/// backend reads `DATABASE_URL`; `open` runs `connect` (an expression of
/// the three names given, a future of `Result<Queue>`) and boxes the queue.
/// `admin` names the backend's module of operations by URL:
/// `open_existing(url, queue, options)` (a queue, creating nothing),
/// `migrate(url)` (the steps applied, as [`applied_steps`](crate::applied_steps)
/// says them) and `list_queues(url)` (by [`LIST_QUEUES_SQL`](crate::LIST_QUEUES_SQL));
/// `create_queue` is `migrate`, since queues are rows.
/// `connect` must never quote the URL in its errors: it may hold a password.
///
/// ```ignore
/// flextide_queue_sql::connector! {
///     MySqlConnector {
///         name: crate::BACKEND,
///         aliases: &["mariadb"],
///         schemes: SCHEMES,
///         default_url: None,
///         example_url: "mysql://user:password@127.0.0.1:3306/app",
///         open(url, queue, options) => MySqlQueue::connect(url, queue, options),
///         admin: crate::admin,
///     }
/// }
/// ```
#[macro_export]
macro_rules! connector {
    (
        $connector:ty {
            name: $name:expr,
            aliases: $aliases:expr,
            schemes: $schemes:expr,
            default_url: $default_url:expr,
            example_url: $example_url:expr,
            open($url:ident, $queue:ident, $options:ident) => $connect:expr,
            admin: $admin:path $(,)?
        }
    ) => {
        #[$crate::__private::async_trait]
        impl $crate::__private::Connector for $connector {
            fn name(&self) -> &'static str {
                $name
            }

            fn aliases(&self) -> &'static [&'static str] {
                $aliases
            }

            fn schemes(&self) -> &'static [&'static str] {
                $schemes
            }

            fn url_vars(&self) -> &'static [&'static str] {
                &["DATABASE_URL"]
            }

            fn default_url(&self) -> ::std::option::Option<&'static str> {
                $default_url
            }

            fn example_url(&self) -> &'static str {
                $example_url
            }

            async fn open(
                &self,
                $url: &str,
                $queue: &str,
                $options: $crate::__private::QueueOptions,
            ) -> $crate::__private::Result<::std::sync::Arc<dyn $crate::__private::QueueProvider>>
            {
                ::std::result::Result::Ok(::std::sync::Arc::new($connect.await?))
            }

            async fn open_existing(
                &self,
                url: &str,
                queue: &str,
                options: $crate::__private::QueueOptions,
            ) -> $crate::__private::Result<::std::sync::Arc<dyn $crate::__private::QueueProvider>>
            {
                use $admin as admin;
                ::std::result::Result::Ok(::std::sync::Arc::new(
                    admin::open_existing(url, queue, options).await?,
                ))
            }

            async fn migrate(
                &self,
                url: &str,
            ) -> $crate::__private::Result<
                ::std::option::Option<::std::vec::Vec<::std::string::String>>,
            > {
                use $admin as admin;
                ::std::result::Result::Ok(::std::option::Option::Some(admin::migrate(url).await?))
            }

            // Queues are rows: creating one is having the tables.
            async fn create_queue(
                &self,
                url: &str,
                queue: &str,
                _options: $crate::__private::QueueOptions,
            ) -> $crate::__private::Result<()> {
                use $admin as admin;
                $crate::__private::validate_queue_name(queue)?;
                admin::migrate(url).await.map(drop)
            }

            async fn list_queues(
                &self,
                url: &str,
            ) -> $crate::__private::Result<::std::vec::Vec<::std::string::String>> {
                use $admin as admin;
                admin::list_queues(url).await
            }
        }
    };
}

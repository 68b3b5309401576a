-- Flextide Queue for MySQL 8.0+ / MariaDB 10.6+, version 2: `pri_inv` is
-- derived by the server from `priority`, so a row another producer inserts
-- with a priority but no `pri_inv` is still claimed in priority order.
-- The ALTER recomputes every existing row (their rows stay, the claim index
-- is rebuilt) and running it again changes nothing. `priority ^ 255` is
-- `255 - priority` for 0..=255; MariaDB refuses an unsigned subtraction in a
-- generated column (its result depends on sql_mode).
-- Writers must no longer name `pri_inv` in an INSERT.

ALTER TABLE flextide_queue_messages
    MODIFY COLUMN pri_inv TINYINT UNSIGNED AS (priority ^ 255) STORED;

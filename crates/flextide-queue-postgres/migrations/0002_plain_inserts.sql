-- Flextide Queue, PostgreSQL schema version 2: other producers may enqueue
-- with a plain INSERT naming only the queue and the payload:
--
--   INSERT INTO flextide_queue_messages (queue, payload) VALUES ('emails', 'hello');
--
-- Such a row has no id until its first claim gives it `postgres-<seq>`,
-- which it keeps on every delivery and in the dead letters. Its times
-- default to now on the database clock (milliseconds since the epoch).
-- Headers, if given, must be a JSON object of strings (or empty); a row
-- whose headers are not is moved to the dead letters by the pop that meets
-- it, with a reason starting `undecodable:`.
--
-- Every statement is idempotent.

ALTER TABLE flextide_queue_messages ALTER COLUMN id DROP NOT NULL;

ALTER TABLE flextide_queue_messages
    ALTER COLUMN enqueued_at SET DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

ALTER TABLE flextide_queue_messages
    ALTER COLUMN visible_at SET DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

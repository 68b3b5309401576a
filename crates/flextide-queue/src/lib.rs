//! Flextide Queue: one QueueProvider over memory, SQLite, PostgreSQL, MySQL, SQS, RabbitMQ or Redis, chosen by QUEUE_PROVIDER.

//! AWS SQS backend for Flextide Queue (standard and FIFO): batching, long polling, redrive dead letters.

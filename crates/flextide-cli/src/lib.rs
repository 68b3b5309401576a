//! The flextide command: run the demo, push, pop, inspect stats, list and replay dead letters, run a command per message.

//! Redis Streams backend for Flextide Queue: consumer groups, fenced acks in Lua, delayed messages, dead-letter streams.

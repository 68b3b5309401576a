//! In-process Flextide Queue backend with leases, fencing, delay, priority and dead letters: for tests and single-process programs.

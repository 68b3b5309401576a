//! The admin commands end to end on a temporary SQLite file: `migrate`,
//! `queues`, `queue create`, `queue delete`, and the looking-only commands
//! (`stats`, `peek`, `dlq list`) creating nothing.

mod common;

use common::{Scratch, field};

/// The error line of a failed run.
fn fails(s: &Scratch, args: &[&str]) -> String {
    let out = s.run(args);
    assert!(!out.status.success(), "flextide {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn migrate_reports_what_it_applied_then_that_it_is_up_to_date() {
    let s = Scratch::new("migrate");
    let first = s.ok(&["migrate"]);
    assert!(first.contains("applied 1 create queue tables"), "{first}");
    assert!(first.contains("schema up to date"), "{first}");
    let again = s.ok(&["migrate"]);
    assert!(!again.contains("applied"), "{again}");
    assert!(again.contains("schema up to date"), "{again}");
    assert!(!again.contains("password"), "{again}");
}

#[test]
fn looking_commands_create_nothing() {
    let s = Scratch::new("looking");
    for args in [&["stats"][..], &["peek"], &["dlq", "list"], &["queues"]] {
        let e = fails(&s, args);
        assert!(
            e.contains("no SQLite database") && e.contains("flextide migrate"),
            "{args:?}: {e}"
        );
    }
    assert!(
        !s.dir.join("queue.db").exists(),
        "a looking command created the database"
    );
    // Once it exists, they work, and an unknown queue is simply empty.
    s.ok(&["migrate"]);
    assert_eq!(field(&s.ok(&["stats", "--queue", "nobody"]), "ready"), 0);
}

#[test]
fn queues_lists_every_queue_with_its_counts() {
    let s = Scratch::new("queues");
    s.ok(&["migrate"]);
    let none = s.run(&["queues"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no queues"));
    s.ok(&["push", "--queue", "alpha", "a1"]);
    s.ok(&["push", "--queue", "alpha", "a2"]);
    s.ok(&["push", "--queue", "beta", "b1"]);
    s.ok(&["pop", "--queue", "beta", "--keep"]);
    let table = s.ok(&["queues"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["alpha", "2", "0", "0", "0"],
            vec!["beta", "1", "0", "0", "0"]
        ],
        "{table}"
    );
    let json: Vec<serde_json::Value> = s
        .ok(&["queues", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["queue"], "alpha");
    assert_eq!(json[0]["ready"], 2);
}

#[test]
fn queue_create_is_idempotent_and_sets_up_the_tables() {
    let s = Scratch::new("create");
    let out = s.ok(&["queue", "create", "orders"]);
    assert!(out.contains("queue orders is ready"), "{out}");
    s.ok(&["queue", "create", "orders", "--max-receive", "3"]);
    assert!(!s.ok(&["migrate"]).contains("applied"));
    assert_eq!(field(&s.ok(&["stats", "--queue", "orders"]), "ready"), 0);
    let e = fails(&s, &["queue", "create", "bad name"]);
    assert!(e.contains("invalid queue name"), "{e}");
}

#[test]
fn admin_commands_refuse_the_memory_backend() {
    let s = Scratch::new("admin-memory");
    for args in [
        &["queues"][..],
        &["queue", "create", "x"],
        &["queue", "delete", "x", "--yes"],
    ] {
        let out = s
            .flextide(args)
            .env("QUEUE_PROVIDER", "memory")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("QUEUE_PROVIDER=memory"), "{args:?}: {e}");
    }
    let out = s
        .flextide(&["migrate"])
        .env("QUEUE_PROVIDER", "memory")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to migrate"));
}

#[test]
fn queue_delete_asks_for_yes_then_deletes() {
    let s = Scratch::new("delete");
    s.ok(&["push", "--queue", "doomed", "x"]);
    s.ok(&["push", "--queue", "kept", "y"]);
    let e = fails(&s, &["queue", "delete", "doomed"]);
    assert!(e.contains("add --yes") && e.contains("1 ready"), "{e}");
    assert_eq!(field(&s.ok(&["stats", "--queue", "doomed"]), "ready"), 1);
    let out = s.ok(&["queue", "delete", "doomed", "--yes"]);
    assert!(out.contains("deleted queue doomed"), "{out}");
    let table = s.ok(&["queues"]);
    assert!(
        !table.contains("doomed") && table.contains("kept"),
        "{table}"
    );
    // Deleting a queue that does not exist succeeds.
    s.ok(&["queue", "delete", "doomed", "--yes"]);
}

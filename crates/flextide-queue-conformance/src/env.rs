//! Environment handling: which backends a run requires, unique names.

/// Backends listed in `FLEXTIDE_TEST_REQUIRE` (comma or space separated;
/// `all` requires every backend). A required backend that cannot be reached
/// fails the run instead of being skipped.
pub fn required_backends() -> Vec<String> {
    std::env::var("FLEXTIDE_TEST_REQUIRE")
        .unwrap_or_default()
        .split([',', ' '])
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Backends `all` does not name: no server for them can run in CI (Azure
/// Service Bus has no emulator outside Docker). Naming one explicitly
/// still requires it.
pub(crate) const NOT_IN_ALL: &[&str] = &["servicebus", "servicebus-amqp10"];

/// Whether `backend` must be reachable in this run.
pub fn is_required(backend: &str) -> bool {
    names_backend(&required_backends(), backend)
}

/// Whether a `FLEXTIDE_TEST_REQUIRE` list names `backend`.
fn names_backend(list: &[String], backend: &str) -> bool {
    let in_all = !NOT_IN_ALL.iter().any(|b| b.eq_ignore_ascii_case(backend));
    list.iter()
        .any(|b| (b == "all" && in_all) || b.eq_ignore_ascii_case(backend))
}

/// For a backend's own integration tests: the server URL in `var`, or `None`
/// when it is unset (the test then returns early, saying so on stderr). When
/// `FLEXTIDE_TEST_REQUIRE` names `backend`, an unset variable panics instead,
/// so a required backend is never skipped.
pub fn server_url(backend: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if is_required(backend) => {
            panic!("FLEXTIDE_TEST_REQUIRE names {backend} but {var} is unset")
        }
        _ => {
            eprintln!("skipped: set {var} to run this {backend} test");
            None
        }
    }
}

/// A queue name no other run or case uses: `ft_<hint>_<random>`, valid on
/// every backend.
pub fn unique_queue_name(hint: &str) -> String {
    let hint: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("ft_{hint}_{}", &id[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_leaves_out_what_ci_cannot_run() {
        let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert!(names_backend(&list("all"), "postgres"));
        assert!(!names_backend(&list("all"), "servicebus"));
        assert!(names_backend(&list("all,servicebus"), "servicebus"));
        assert!(!names_backend(&list("redis"), "postgres"));
    }

    #[test]
    fn names_are_valid_and_unique() {
        let a = unique_queue_name(
            "lease::expiry redelivers with a very long case name indeed, more than fifty",
        );
        let b = unique_queue_name(
            "lease::expiry redelivers with a very long case name indeed, more than fifty",
        );
        assert_ne!(a, b);
        flextide_queue_core::validate_queue_name(&a).unwrap();
    }
}

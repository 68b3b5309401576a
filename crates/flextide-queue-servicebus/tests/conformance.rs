//! The whole conformance suite against a real Service Bus namespace.
//!
//! Run with `FLEXTIDE_TEST_SERVICEBUS_URL='Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=…'
//! cargo test -p flextide-queue-servicebus --test conformance`. Each case
//! creates its own queue (REST management endpoint, the Manage right) and
//! deletes it. Without the variable every case shows as ignored, also
//! under `FLEXTIDE_TEST_REQUIRE=all`: no namespace exists in this
//! project's CI (name `servicebus` in it explicitly to require one).

mod common;

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("servicebus", common::connect)
}

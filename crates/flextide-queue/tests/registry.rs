//! Opening backends through the registry: by URL scheme, by
//! `QUEUE_PROVIDER`, and a third party's backend registered at run time.
#![cfg(feature = "sqlite")]

use std::{collections::HashMap, sync::Arc, time::Duration};

use flextide_queue::{Config, Connector, Message, QueueOptions, QueueProvider, Result};

/// A third-party backend: here, an in-memory SQLite database under a
/// scheme of its own.
#[derive(Debug)]
struct Acme;

#[async_trait::async_trait]
impl Connector for Acme {
    fn name(&self) -> &'static str {
        "acme"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["acme"]
    }
    fn url_vars(&self) -> &'static [&'static str] {
        &["ACME_URL"]
    }
    fn example_url(&self) -> &'static str {
        "acme://broker:7000"
    }
    async fn open(
        &self,
        _url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        flextide_queue::open("sqlite::memory:", queue, options).await
    }
}

async fn round_trip(q: &dyn QueueProvider) {
    let id = q.push(Message::new("hello")).await.unwrap();
    let d = q.pop(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
}

#[tokio::test]
async fn opens_by_url_scheme() {
    let q = flextide_queue::open("sqlite::memory:", "by-url", QueueOptions::default())
        .await
        .unwrap();
    assert_eq!(q.backend_name(), "sqlite");
    round_trip(&*q).await;
    let e = flextide_queue::open("nosuch://h/x", "q", QueueOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nosuch"), "{e}");
    // A backend of this repository left out of the build names its feature,
    // and never the password.
    let e = flextide_queue::open("kafka2://u:pw@h", "q", QueueOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("pw"), "{e}");
}

#[tokio::test]
async fn a_registered_backend_opens_like_a_built_in_one() {
    flextide_queue::register(Arc::new(Acme));
    // By URL ...
    let q = flextide_queue::open("acme://broker:7000", "third-party", QueueOptions::default())
        .await
        .unwrap();
    round_trip(&*q).await;
    // ... and from the environment, by name with its own variable, or by QUEUE_URL.
    for vars in [
        vec![("QUEUE_PROVIDER", "acme"), ("ACME_URL", "acme://b:7000")],
        vec![("QUEUE_URL", "acme://b:7000")],
    ] {
        let map: HashMap<&str, &str> = vars.into_iter().collect();
        let config = Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.backend, "acme");
        let q = flextide_queue::connect(&config).await.unwrap();
        round_trip(&*q).await;
    }
    assert!(flextide_queue::registry().names().contains(&"acme"));
}

//! Requests to an entity's `$management` node (Service Bus AMQP
//! request/response guide): renewing locks. Each is a
//! `fe2o3_amqp_management::Request` so the engine sends it and matches
//! the response by correlation id.

use std::time::SystemTime;

use fe2o3_amqp_management::{request::Request, response::Response};
use fe2o3_amqp_types::{
    messaging::{ApplicationProperties, Message},
    primitives::{Array, OrderedMap, SimpleValue, Value},
};
use uuid::Uuid;

use crate::codec::system_time;

/// `com.microsoft:renew-lock`.
pub(crate) const RENEW_LOCK: &str = "com.microsoft:renew-lock";
const LOCK_TOKENS: &str = "lock-tokens";
const EXPIRATIONS: &str = "expirations";
/// Ties the request to the receive link the messages came on, which
/// Service Bus requires for locks taken by a link.
const ASSOCIATED_LINK: &str = "associated-link-name";
const SERVER_TIMEOUT: &str = "com.microsoft:server-timeout";

/// Renews the locks of `tokens`, taken on the receive link `link`.
#[derive(Debug, Clone)]
pub(crate) struct RenewLock {
    pub(crate) tokens: Vec<Uuid>,
    pub(crate) link: String,
    /// How long the broker may take, in milliseconds.
    pub(crate) server_timeout_ms: u32,
}

impl Request for RenewLock {
    const OPERATION: &'static str = RENEW_LOCK;
    type Response = RenewLockResponse;
    type Body = Value;

    fn encode_application_properties(&mut self) -> Option<ApplicationProperties> {
        Some(
            ApplicationProperties::builder()
                .insert(SERVER_TIMEOUT, SimpleValue::Uint(self.server_timeout_ms))
                .insert(ASSOCIATED_LINK, SimpleValue::String(self.link.clone()))
                .build(),
        )
    }

    fn encode_body(self) -> Value {
        let tokens = self
            .tokens
            .iter()
            .map(|t| Value::Uuid(fe2o3_amqp_types::primitives::Uuid::from(*t.as_bytes())))
            .collect::<Vec<_>>();
        let mut map = OrderedMap::new();
        map.insert(
            Value::String(LOCK_TOKENS.into()),
            Value::Array(Array::from(tokens)),
        );
        Value::Map(map)
    }
}

/// The new expiry of each renewed lock, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenewLockResponse {
    pub(crate) expirations: Vec<SystemTime>,
}

impl Response for RenewLockResponse {
    const STATUS_CODE: u16 = 200;
    type Body = Value;
    type Error = fe2o3_amqp_management::error::Error;

    fn decode_message(message: Message<Value>) -> Result<Self, Self::Error> {
        Ok(Self {
            expirations: expirations(&message.body),
        })
    }
}

fn expirations(body: &Value) -> Vec<SystemTime> {
    let Value::Map(map) = body else {
        return Vec::new();
    };
    match map.get(&Value::String(EXPIRATIONS.into())) {
        Some(Value::Array(a)) => {
            a.0.iter()
                .filter_map(|v| match v {
                    Value::Timestamp(t) => Some(system_time(t.clone())),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use fe2o3_amqp_types::primitives::Timestamp;

    use super::*;

    #[test]
    fn renew_lock_request_has_the_documented_shape() {
        // Service Bus AMQP guide, "Message renew lock": operation
        // com.microsoft:renew-lock, body map { "lock-tokens": uuid[] }.
        let token = Uuid::parse_str("d2f8c4c6-6c3a-4d89-9a3d-2b1f0c4e5a6b").unwrap();
        let message = RenewLock {
            tokens: vec![token],
            link: "ftq-receiver-1".into(),
            server_timeout_ms: 30_000,
        }
        .into_message();
        let props = message.application_properties.as_ref().unwrap();
        assert_eq!(
            props.0.get("operation"),
            Some(&SimpleValue::String(RENEW_LOCK.into()))
        );
        assert_eq!(
            props.0.get(ASSOCIATED_LINK),
            Some(&SimpleValue::String("ftq-receiver-1".into()))
        );
        let Value::Map(body) = &message.body else {
            panic!("body is not a map: {:?}", message.body)
        };
        assert_eq!(
            body.get(&Value::String("lock-tokens".into())),
            Some(&Value::Array(Array::from(vec![Value::Uuid(
                fe2o3_amqp_types::primitives::Uuid::from(*token.as_bytes())
            )])))
        );
    }

    #[test]
    fn reads_the_expirations_of_a_response() {
        let mut map = OrderedMap::new();
        map.insert(
            Value::String("expirations".into()),
            Value::Array(Array::from(vec![Value::Timestamp(
                Timestamp::from_milliseconds(90_000),
            )])),
        );
        let response =
            RenewLockResponse::decode_message(Message::builder().body(Value::Map(map)).build())
                .unwrap();
        assert_eq!(
            response.expirations,
            vec![UNIX_EPOCH + Duration::from_secs(90)]
        );
        assert!(expirations(&Value::Null).is_empty());
    }
}

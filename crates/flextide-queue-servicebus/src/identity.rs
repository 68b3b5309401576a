//! Microsoft Entra ID (Azure AD) for Service Bus, feature `identity`: a
//! token credential from `azure_identity` (managed identity, workload
//! identity, a service principal's secret, or the developer's `az login`)
//! whose tokens the connection puts on `$cbs` as `jwt`, one per entity,
//! and puts again before they expire.
//!
//! From the environment ([`credential_from_env`]) the choice is explicit
//! rather than a chain tried in turn, so a failure names the one credential
//! that was used:
//! - `AZURE_FEDERATED_TOKEN_FILE` set: workload identity (AKS), with
//!   `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`;
//! - `AZURE_CLIENT_SECRET` set: that service principal, with
//!   `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`;
//! - `SERVICEBUS_CREDENTIAL=developer`: the Azure CLI's or Azure Developer
//!   CLI's login (for a developer's machine);
//! - otherwise: the managed identity of the host (user-assigned when
//!   `AZURE_CLIENT_ID` is set, else system-assigned).

use std::{fmt, sync::Arc, time::SystemTime};

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use flextide_queue_core::{QueueError, Result};

use crate::BACKEND;

/// The variable that picks the developer tools' login.
pub const CREDENTIAL_ENV: &str = "SERVICEBUS_CREDENTIAL";

/// The scope of Service Bus data-plane tokens.
pub(crate) const SCOPE: &str = "https://servicebus.azure.net/.default";

/// The CBS token type of a Microsoft Entra ID token.
pub(crate) const JWT_TOKEN_TYPE: &str = "jwt";

/// A token credential for Service Bus. Compared by identity (two configs
/// are equal when they hold the same credential); `Debug` shows only that
/// there is one.
#[derive(Clone)]
pub struct EntraCredential(Arc<dyn TokenCredential>);

impl EntraCredential {
    /// Wraps any `azure_core` token credential.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self(credential)
    }

    /// A token for Service Bus and when it expires. The token is a secret:
    /// never logged.
    pub(crate) async fn token(&self) -> Result<(String, SystemTime)> {
        let token = self.0.get_token(&[SCOPE], None).await.map_err(|e| {
            QueueError::connection(
                BACKEND,
                format!("getting a Microsoft Entra ID token for {SCOPE}: {e}"),
            )
        })?;
        Ok((
            token.token.secret().to_owned(),
            SystemTime::from(token.expires_on),
        ))
    }
}

impl PartialEq for EntraCredential {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for EntraCredential {}

impl fmt::Debug for EntraCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EntraCredential(..)")
    }
}

/// Which credential the environment asks for. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
enum Choice {
    Workload,
    ClientSecret {
        tenant: String,
        client: String,
        secret: String,
    },
    Developer,
    Managed {
        client: Option<String>,
    },
}

impl fmt::Debug for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Workload => f.write_str("Workload"),
            Choice::ClientSecret { tenant, client, .. } => f
                .debug_struct("ClientSecret")
                .field("tenant", tenant)
                .field("client", client)
                .field("secret", &"***")
                .finish(),
            Choice::Developer => f.write_str("Developer"),
            Choice::Managed { client } => {
                f.debug_struct("Managed").field("client", client).finish()
            }
        }
    }
}

fn choose(var: impl Fn(&str) -> Option<String>) -> Result<Choice> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let needs = |name: &str, why: &str| {
        var(name)
            .ok_or_else(|| QueueError::configuration(BACKEND, format!("{why} also needs {name}")))
    };
    if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        needs(
            "AZURE_TENANT_ID",
            "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
        )?;
        needs(
            "AZURE_CLIENT_ID",
            "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
        )?;
        return Ok(Choice::Workload);
    }
    if let Some(secret) = var("AZURE_CLIENT_SECRET") {
        let why = "a service principal (AZURE_CLIENT_SECRET)";
        return Ok(Choice::ClientSecret {
            tenant: needs("AZURE_TENANT_ID", why)?,
            client: needs("AZURE_CLIENT_ID", why)?,
            secret,
        });
    }
    match var(CREDENTIAL_ENV).as_deref().map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("developer") => Ok(Choice::Developer),
        Some(v) if v.eq_ignore_ascii_case("managed") => Ok(Choice::Managed {
            client: var("AZURE_CLIENT_ID"),
        }),
        Some(other) => Err(QueueError::configuration(
            BACKEND,
            format!(
                "{CREDENTIAL_ENV}={other:?} is not a credential this backend knows: write developer (az or azd login) or managed, or leave it unset"
            ),
        )),
        None => Ok(Choice::Managed {
            client: var("AZURE_CLIENT_ID"),
        }),
    }
}

fn build(choice: Choice) -> azure_core::Result<Arc<dyn TokenCredential>> {
    Ok(match choice {
        Choice::Workload => WorkloadIdentityCredential::new(None)?,
        Choice::ClientSecret {
            tenant,
            client,
            secret,
        } => ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)?,
        Choice::Developer => DeveloperToolsCredential::new(None)?,
        Choice::Managed { client } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client.map(UserAssignedId::ClientId),
                ..Default::default()
            }))?
        }
    })
}

/// The credential the environment names (see the module documentation).
pub fn credential_from_env() -> Result<EntraCredential> {
    let choice = choose(|name| std::env::var(name).ok())?;
    let label = format!("{choice:?}");
    build(choice).map(EntraCredential::new).map_err(|e| {
        QueueError::configuration(
            BACKEND,
            format!("making the Microsoft Entra ID credential {label}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Choice> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        choose(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_picks_one_credential() {
        assert_eq!(from(&[]).unwrap(), Choice::Managed { client: None });
        assert_eq!(
            from(&[("AZURE_CLIENT_ID", "c1")]).unwrap(),
            Choice::Managed {
                client: Some("c1".into())
            }
        );
        assert_eq!(
            from(&[
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
            ])
            .unwrap(),
            Choice::Workload
        );
        assert_eq!(
            from(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
            ])
            .unwrap(),
            Choice::ClientSecret {
                tenant: "t".into(),
                client: "c".into(),
                secret: "s".into()
            }
        );
        assert_eq!(
            from(&[(CREDENTIAL_ENV, "Developer")]).unwrap(),
            Choice::Developer
        );
    }

    #[test]
    fn missing_or_unknown_settings_say_what_to_set() {
        let e = from(&[
            ("AZURE_CLIENT_SECRET", "TOPSECRET"),
            ("AZURE_CLIENT_ID", "c"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("AZURE_TENANT_ID"), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
        let e = from(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_TENANT_ID", "t"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("AZURE_CLIENT_ID"), "{e}");
        let e = from(&[(CREDENTIAL_ENV, "cli")]).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("developer"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let choice = from(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "TOPSECRET"),
        ])
        .unwrap();
        assert!(!format!("{choice:?}").contains("TOPSECRET"));
        let cred = build(choice).map(EntraCredential::new).unwrap();
        assert_eq!(format!("{cred:?}"), "EntraCredential(..)");
        assert_eq!(cred, cred.clone());
    }

    #[derive(Debug)]
    struct Fixed;

    #[async_trait::async_trait]
    impl TokenCredential for Fixed {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            assert_eq!(scopes, [SCOPE]);
            Ok(azure_core::credentials::AccessToken::new(
                "eyJ.token",
                azure_core::time::OffsetDateTime::UNIX_EPOCH
                    + azure_core::time::Duration::seconds(2_000_000_000),
            ))
        }
    }

    #[test]
    fn a_config_for_a_namespace_and_a_credential() {
        let cred = EntraCredential::new(Arc::new(Fixed));
        let c = crate::ServiceBusConfig::entra(" sb://ns1.servicebus.windows.net/ ", cred.clone())
            .unwrap();
        assert_eq!(c.host, "ns1.servicebus.windows.net");
        assert!(c.tls && c.service_bus && c.port == 5671);
        assert_eq!(c.auth, crate::Auth::Entra(cred));
    }

    #[tokio::test]
    async fn a_token_and_its_expiry_for_the_service_bus_scope() {
        let (token, expires) = EntraCredential::new(Arc::new(Fixed)).token().await.unwrap();
        assert_eq!(token, "eyJ.token");
        assert_eq!(
            expires,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000)
        );
    }
}

//! Connection security of the clients the harness makes (members, the producer, the admin
//! client, conformance checks): Kafka's settings under Kafka's names, as command-line flags
//! (`--security-protocol`, `--sasl-mechanism`, ...) and as a scenario file's `[security]`
//! table with the same names (`security_protocol = "SASL_SSL"`, ...).
//!
//! Secrets stay off command lines, files and reports: a scenario file names the environment
//! variable that holds the password (`sasl_password_env`, COHORT_SASL_PASSWORD by default), and
//! a member process gets it through its environment, never its arguments.

use std::path::PathBuf;

use cohort::{ClientConfig, SaslConfig, SaslMechanism, SecurityProtocol, TlsConfig};
use serde::{Deserialize, Serialize};

use crate::error::HarnessError;

/// The environment variable a member process reads its SASL password from.
pub const PASSWORD_ENV: &str = "COHORT_SASL_PASSWORD";

/// Security settings as given: flags or a scenario file's `[security]` table. Every field is
/// optional so that flags can override a file field by field.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    /// `security.protocol`: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long)]
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long)]
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    #[arg(long)]
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// `sasl.password`; the environment variable COHORT_SASL_PASSWORD keeps it off the command
    /// line (and out of `ps`).
    #[arg(long)]
    #[serde(skip)]
    pub sasl_password: Option<String>,
    /// The environment variable holding the password (scenario files; COHORT_SASL_PASSWORD
    /// when absent).
    #[arg(skip)]
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// `ssl.ca.location`: PEM file of the CAs that sign the brokers' certificates (the
    /// platform's roots when absent).
    #[arg(long)]
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: this client's certificate (PEM), for mutual TLS.
    #[arg(long)]
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: this client's private key (PEM).
    #[arg(long)]
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
}

impl std::fmt::Debug for SecuritySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuritySpec")
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("sasl_password_env", &self.sasl_password_env)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .finish()
    }
}

impl SecuritySpec {
    /// These settings, with `base`'s where these have none (flags over a scenario file).
    pub fn over(self, base: &SecuritySpec) -> SecuritySpec {
        SecuritySpec {
            security_protocol: self
                .security_protocol
                .or_else(|| base.security_protocol.clone()),
            sasl_mechanism: self.sasl_mechanism.or_else(|| base.sasl_mechanism.clone()),
            sasl_username: self.sasl_username.or_else(|| base.sasl_username.clone()),
            sasl_password: self.sasl_password.or_else(|| base.sasl_password.clone()),
            sasl_password_env: self
                .sasl_password_env
                .or_else(|| base.sasl_password_env.clone()),
            ssl_ca_location: self
                .ssl_ca_location
                .or_else(|| base.ssl_ca_location.clone()),
            ssl_certificate_location: self
                .ssl_certificate_location
                .or_else(|| base.ssl_certificate_location.clone()),
            ssl_key_location: self
                .ssl_key_location
                .or_else(|| base.ssl_key_location.clone()),
        }
    }

    /// Checks the settings and reads the password; file contents are read later, when a
    /// client is configured (so a missing file is an error naming it, from the client).
    pub fn resolve(&self) -> Result<Security, HarnessError> {
        let protocol = match &self.security_protocol {
            None => SecurityProtocol::Plaintext,
            Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
                HarnessError::invalid(format!(
                    "security protocol {p:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                ))
            })?,
        };
        let sasl_given = self.sasl_mechanism.is_some() || self.sasl_username.is_some();
        let sasl = if protocol.uses_sasl() {
            let m = self.sasl_mechanism.as_deref().ok_or_else(|| {
                HarnessError::invalid(format!("{protocol} needs --sasl-mechanism"))
            })?;
            let mechanism = SaslMechanism::parse(m).ok_or_else(|| {
                HarnessError::invalid(format!(
                    "SASL mechanism {m:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            })?;
            if mechanism == SaslMechanism::OAuthBearer {
                return Err(HarnessError::invalid(
                    "OAUTHBEARER needs a token provider, which the command line cannot give",
                ));
            }
            let user = self
                .sasl_username
                .as_deref()
                .ok_or_else(|| HarnessError::invalid("SASL needs --sasl-username"))?;
            let env = self.sasl_password_env.as_deref().unwrap_or(PASSWORD_ENV);
            let password = match &self.sasl_password {
                Some(p) => p.clone(),
                None => std::env::var(env).map_err(|_| {
                    HarnessError::invalid(format!(
                        "SASL needs --sasl-password or the environment variable {env}"
                    ))
                })?,
            };
            Some(SaslConfig::new(mechanism, user, password))
        } else if sasl_given {
            return Err(HarnessError::invalid(format!(
                "--sasl-* settings need --security-protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}"
            )));
        } else {
            None
        };
        let tls_given = self.ssl_ca_location.is_some()
            || self.ssl_certificate_location.is_some()
            || self.ssl_key_location.is_some();
        let tls = if protocol.uses_tls() {
            if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
                return Err(HarnessError::invalid(
                    "--ssl-certificate-location and --ssl-key-location go together (mutual TLS)",
                ));
            }
            Some(TlsConfig {
                ca_location: self.ssl_ca_location.clone(),
                certificate_location: self.ssl_certificate_location.clone(),
                key_location: self.ssl_key_location.clone(),
                ..TlsConfig::default()
            })
        } else if tls_given {
            return Err(HarnessError::invalid(format!(
                "--ssl-* settings need --security-protocol SSL or SASL_SSL, not {protocol}"
            )));
        } else {
            None
        };
        Ok(Security {
            protocol,
            sasl,
            tls,
        })
    }
}

/// Checked security settings, ready for any client.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// SASL, for SASL_PLAINTEXT and SASL_SSL (its `Debug` hides the password).
    pub sasl: Option<SaslConfig>,
    /// TLS, for SSL and SASL_SSL.
    pub tls: Option<TlsConfig>,
}

impl Security {
    /// Whether connections are plain and unauthenticated.
    pub fn is_plaintext(&self) -> bool {
        self.protocol == SecurityProtocol::Plaintext
    }

    /// `config` with these settings (wrapping the dialer it has, so a chaos dialer's faults
    /// happen beneath TLS, as a network's would).
    pub fn apply(&self, config: ClientConfig) -> Result<ClientConfig, HarnessError> {
        config
            .with_security(self.protocol, self.sasl.clone(), self.tls.as_ref())
            .map_err(HarnessError::client("the security settings"))
    }

    /// A client configuration for `bootstrap` with these settings.
    pub fn client_config(&self, bootstrap: &str) -> Result<ClientConfig, HarnessError> {
        self.apply(ClientConfig::new(bootstrap))
    }

    /// The flags that give a `cohort member` process these settings, and the environment
    /// variable that carries the password (never an argument).
    pub fn member_args(&self) -> (Vec<String>, Option<(&'static str, String)>) {
        let mut args = vec!["--security-protocol".into(), self.protocol.name().into()];
        let mut env = None;
        if let Some(s) = &self.sasl {
            args.extend([
                "--sasl-mechanism".into(),
                s.mechanism.name().into(),
                "--sasl-username".into(),
                s.username.clone(),
            ]);
            env = Some((PASSWORD_ENV, s.password.expose().to_owned()));
        }
        if let Some(t) = &self.tls {
            for (flag, path) in [
                ("--ssl-ca-location", &t.ca_location),
                ("--ssl-certificate-location", &t.certificate_location),
                ("--ssl-key-location", &t.key_location),
            ] {
                if let Some(p) = path {
                    args.extend([flag.into(), p.display().to_string()]);
                }
            }
        }
        (args, env)
    }

    /// librdkafka's properties for these settings.
    pub fn librdkafka_properties(&self) -> Vec<(&'static str, String)> {
        let mut props = vec![("security.protocol", self.protocol.name().to_owned())];
        if let Some(s) = &self.sasl {
            props.extend([
                ("sasl.mechanisms", s.mechanism.name().to_owned()),
                ("sasl.username", s.username.clone()),
                ("sasl.password", s.password.expose().to_owned()),
            ]);
        }
        if let Some(t) = &self.tls {
            for (key, path) in [
                ("ssl.ca.location", &t.ca_location),
                ("ssl.certificate.location", &t.certificate_location),
                ("ssl.key.location", &t.key_location),
            ] {
                if let Some(p) = path {
                    props.push((key, p.display().to_string()));
                }
            }
        }
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(protocol: &str) -> SecuritySpec {
        SecuritySpec {
            security_protocol: Some(protocol.into()),
            ..SecuritySpec::default()
        }
    }

    #[test]
    fn settings_are_checked_against_the_protocol() {
        assert!(SecuritySpec::default().resolve().unwrap().is_plaintext());
        let mut s = spec("sasl_ssl");
        s.sasl_mechanism = Some("SCRAM-SHA-512".into());
        s.sasl_username = Some("alice".into());
        s.sasl_password = Some("s3cret".into());
        s.ssl_ca_location = Some("ca.pem".into());
        let r = s.resolve().unwrap();
        assert_eq!(r.protocol, SecurityProtocol::SaslSsl);
        let (args, env) = r.member_args();
        assert!(!args.iter().any(|a| a.contains("s3cret")), "{args:?}");
        assert_eq!(env, Some((PASSWORD_ENV, "s3cret".into())));
        assert!(args.contains(&"--ssl-ca-location".to_owned()));
        assert!(!format!("{s:?} {r:?}").contains("s3cret"));
        for (bad, why) in [
            (spec("TLS"), "expected PLAINTEXT"),
            (spec("SASL_PLAINTEXT"), "needs --sasl-mechanism"),
            (
                SecuritySpec {
                    sasl_username: Some("a".into()),
                    ..spec("SSL")
                },
                "--sasl-* settings need",
            ),
            (
                SecuritySpec {
                    ssl_ca_location: Some("ca.pem".into()),
                    ..SecuritySpec::default()
                },
                "--ssl-* settings need",
            ),
            (
                SecuritySpec {
                    ssl_key_location: Some("k.pem".into()),
                    ..spec("SSL")
                },
                "go together",
            ),
        ] {
            let e = bad.resolve().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn flags_override_a_file_field_by_field() {
        let file = SecuritySpec {
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("file-user".into()),
            ..spec("SASL_PLAINTEXT")
        };
        let flags = SecuritySpec {
            sasl_username: Some("flag-user".into()),
            ..SecuritySpec::default()
        };
        let m = flags.over(&file);
        assert_eq!(m.security_protocol.as_deref(), Some("SASL_PLAINTEXT"));
        assert_eq!(m.sasl_username.as_deref(), Some("flag-user"));
        assert_eq!(m.sasl_mechanism.as_deref(), Some("PLAIN"));
    }
}

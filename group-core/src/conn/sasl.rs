//! SASL authentication of a connection (KIP-43 SaslHandshake, KIP-152 SaslAuthenticate):
//! `PLAIN` (RFC 4616), `SCRAM-SHA-256` and `SCRAM-SHA-512` (RFC 5802, RFC 7677; the server's
//! signature is verified), and `OAUTHBEARER` with a token from the application (RFC 7628,
//! KIP-255). Every connection authenticates right after ApiVersions, the coordinator's and the
//! fetchers' alike, and again after every reconnect; the session lifetime the broker grants
//! (KIP-368) is kept so the connection is replaced before it runs out.
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` print `***`: they never reach
//! logs, error messages or reports.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A password, a token or another secret: printed as `***` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself (for the exchange; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN`: the user name and password in the clear (use it over TLS only).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` with a token from [`SaslConfig::token_provider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses Kafka's name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An OAuth 2 bearer token for `OAUTHBEARER`.
#[derive(Debug, Clone)]
pub struct OAuthToken {
    /// The token (a JWS compact serialization for Kafka's default validator).
    pub value: Secret,
    /// SASL extensions sent with it (KIP-342), e.g. a logical cluster id.
    pub extensions: BTreeMap<String, String>,
}

/// Supplies `OAUTHBEARER` tokens; asked on every authentication, so it can refresh them
/// (Java's `AuthenticateCallbackHandler` for `OAuthBearerTokenCallback`).
#[async_trait]
pub trait TokenProvider: Send + Sync + 'static {
    /// A current token, or why there is none.
    async fn token(&self) -> Result<OAuthToken, String>;
}

/// SASL settings (`sasl.mechanism`, `sasl.username`, `sasl.password`, the OAUTHBEARER token
/// callback).
#[derive(Clone)]
pub struct SaslConfig {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name (PLAIN, SCRAM).
    pub username: String,
    /// Password (PLAIN, SCRAM).
    pub password: Secret,
    /// Tokens for OAUTHBEARER.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token_provider", &self.token_provider.is_some())
            .finish()
    }
}

impl SaslConfig {
    /// PLAIN or SCRAM with a user name and password.
    pub fn new(mechanism: SaslMechanism, username: &str, password: impl Into<Secret>) -> Self {
        Self {
            mechanism,
            username: username.to_owned(),
            password: password.into(),
            token_provider: None,
        }
    }

    /// OAUTHBEARER with tokens from `provider`.
    pub fn oauthbearer(provider: Arc<dyn TokenProvider>) -> Self {
        Self {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: Secret::new(""),
            token_provider: Some(provider),
        }
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        match self.mechanism {
            SaslMechanism::OAuthBearer if self.token_provider.is_none() => {
                problems.push("sasl: OAUTHBEARER needs a token provider".into());
            }
            SaslMechanism::OAuthBearer => {}
            _ if self.username.is_empty() => {
                problems.push(format!("sasl: {} needs a user name", self.mechanism));
            }
            _ => {}
        }
    }
}

/// Why an exchange failed, before the broker's own verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaslError(pub(crate) String);

/// One mechanism's side of the exchange.
pub(crate) enum Exchange {
    Plain,
    Scram(Box<Scram>),
    OAuth { done: bool },
}

impl Exchange {
    /// The client's first message.
    pub(crate) async fn first(cfg: &SaslConfig) -> Result<(Self, Vec<u8>), SaslError> {
        match cfg.mechanism {
            SaslMechanism::Plain => {
                let mut m = Vec::with_capacity(cfg.username.len() + cfg.password.0.len() + 2);
                m.push(0);
                m.extend_from_slice(cfg.username.as_bytes());
                m.push(0);
                m.extend_from_slice(cfg.password.0.as_bytes());
                Ok((Exchange::Plain, m))
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if cfg.mechanism == SaslMechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                let (s, m) = Scram::start(hash, &cfg.username, cfg.password.clone(), &nonce()?);
                Ok((Exchange::Scram(Box::new(s)), m.into_bytes()))
            }
            SaslMechanism::OAuthBearer => {
                let p = cfg
                    .token_provider
                    .as_ref()
                    .ok_or_else(|| SaslError("OAUTHBEARER needs a token provider".into()))?;
                let t = p
                    .token()
                    .await
                    .map_err(|e| SaslError(format!("the token provider failed: {e}")))?;
                Ok((Exchange::OAuth { done: false }, oauth_first(&t)))
            }
        }
    }

    /// The answer to the broker's message; `None` when the exchange is complete.
    pub(crate) fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match self {
            Exchange::Plain => Ok(None),
            Exchange::Scram(s) => s.step(server),
            Exchange::OAuth { done } => {
                if server.is_empty() || *done {
                    Ok(None)
                } else {
                    // RFC 7628 3.2.2: the server's error JSON is acknowledged with a lone
                    // %x01, after which the broker fails the authentication with its message.
                    *done = true;
                    Ok(Some(vec![1]))
                }
            }
        }
    }

    /// Whether the mechanism has verified the server (SCRAM's final message).
    pub(crate) fn complete(&self) -> bool {
        match self {
            Exchange::Scram(s) => matches!(s.state, ScramState::Done),
            _ => true,
        }
    }
}

fn oauth_first(t: &OAuthToken) -> Vec<u8> {
    let mut m = format!("n,,\x01auth=Bearer {}", t.value.0);
    for (k, v) in &t.extensions {
        m.push('\x01');
        m.push_str(k);
        m.push('=');
        m.push_str(v);
    }
    m.push_str("\x01\x01");
    m.into_bytes()
}

/// 24 random bytes, base64: a client nonce of printable characters without commas.
fn nonce() -> Result<String, SaslError> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| SaslError(format!("no randomness for a nonce: {e}")))?;
    Ok(B64.encode(b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! mac {
            ($h:ty) => {{
                // HMAC takes keys of any length (RFC 2104).
                let mut m = <Hmac<$h> as Mac>::new_from_slice(key).expect("HMAC takes any key");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            ScramHash::Sha256 => mac!(Sha256),
            ScramHash::Sha512 => mac!(Sha512),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// Kafka's bounds on SCRAM iterations (`ScramMechanism`: 4096 minimum); the maximum keeps a
/// hostile broker from costing the client minutes of CPU per connection.
const SCRAM_MIN_ITERATIONS: u32 = 4096;
const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;

enum ScramState {
    /// Sent client-first; waiting for server-first.
    First,
    /// Sent client-final; waiting for server-final with this signature.
    Final {
        server_signature: Vec<u8>,
    },
    Done,
}

/// The client side of SCRAM (RFC 5802).
pub(crate) struct Scram {
    hash: ScramHash,
    password: Secret,
    client_nonce: String,
    client_first_bare: String,
    state: ScramState,
}

/// `saslname` of RFC 5802: `=` and `,` escaped.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl Scram {
    fn start(hash: ScramHash, user: &str, password: Secret, nonce: &str) -> (Self, String) {
        let bare = format!("n={},r={nonce}", sasl_name(user));
        let first = format!("n,,{bare}");
        (
            Scram {
                hash,
                password,
                client_nonce: nonce.to_owned(),
                client_first_bare: bare,
                state: ScramState::First,
            },
            first,
        )
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let msg = std::str::from_utf8(server)
            .map_err(|_| SaslError("the broker's SCRAM message is not UTF-8".into()))?;
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::First => {
                let (final_msg, server_signature) = self.client_final(msg)?;
                self.state = ScramState::Final { server_signature };
                Ok(Some(final_msg.into_bytes()))
            }
            ScramState::Final { server_signature } => {
                let attr = |k: char| {
                    msg.split(',')
                        .find_map(|p| p.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                };
                if let Some(e) = attr('e') {
                    return Err(SaslError(format!("the broker refused: {e}")));
                }
                let v = attr('v')
                    .and_then(|v| B64.decode(v).ok())
                    .ok_or_else(|| SaslError("server-final message without a signature".into()))?;
                if v != server_signature {
                    return Err(SaslError(
                        "the broker's SCRAM signature is wrong: it does not know the password"
                            .into(),
                    ));
                }
                Ok(None)
            }
            ScramState::Done => Err(SaslError("a SCRAM message after the exchange".into())),
        }
    }

    /// client-final for server-first, and the server signature to expect.
    fn client_final(&self, server_first: &str) -> Result<(String, Vec<u8>), SaslError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => {
                    return Err(SaslError("SCRAM extension `m` is not supported".into()));
                }
                _ => {}
            }
        }
        let bad = |what: &str| SaslError(format!("server-first message: {what}"));
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(bad("the nonce does not extend ours"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| bad("no salt"))?)
            .map_err(|_| bad("the salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| bad("no iteration count"))?
            .parse()
            .map_err(|_| bad("the iteration count is not a number"))?;
        if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
            return Err(bad(&format!(
                "{iterations} iterations (accepted: {SCRAM_MIN_ITERATIONS} to {SCRAM_MAX_ITERATIONS})"
            )));
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.0.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, &[b"Client Key"]);
        let stored_key = h.hash(&client_key);
        // "biws" is base64("n,,"): no channel binding, no authorization id.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = h.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, &[b"Server Key"]);
        let server_signature = h.hmac(&server_key, &[auth_message.as_bytes()]);
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        ))
    }
}

/// How long before the broker's session ends the connection stops taking new requests: Java
/// re-authenticates at 85-95% of the session lifetime (`SaslClientAuthenticator`); this client
/// opens a fresh, authenticated connection at 90% and lets the old one finish what it has.
pub(crate) fn renew_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.9)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: the SCRAM-SHA-256 exchange of user "user", password "pencil".
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let (mut s, first) = Scram::start(
            ScramHash::Sha256,
            "user",
            Secret::new("pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.step(server_first.as_bytes()).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            s.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
        assert!(matches!(s.state, ScramState::Done));
    }

    /// RFC 5802, section 5: the SCRAM-SHA-1 example's messages with SHA-256 would differ, so
    /// the server's signature is checked by tampering with it instead.
    #[test]
    fn a_wrong_server_signature_is_refused() {
        let (mut s, _) = Scram::start(
            ScramHash::Sha256,
            "user",
            Secret::new("pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        s.step(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
        let e = s
            .step(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(e.0.contains("signature is wrong"), "{e:?}");
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let start = || Scram::start(ScramHash::Sha512, "u,=x", Secret::new("p"), "abc");
        let (_, first) = start();
        assert_eq!(first, "n,,n=u=2C=3Dx,r=abc");
        for (msg, why) in [
            ("r=xyz,s=c2FsdA==,i=4096", "does not extend"),
            ("r=abc,s=c2FsdA==,i=4096", "does not extend"),
            ("r=abcd,s=!!,i=4096", "not base64"),
            ("r=abcd,s=c2FsdA==,i=99", "iterations"),
            ("r=abcd,s=c2FsdA==,i=4000000000", "iterations"),
            ("r=abcd,s=c2FsdA==,i=x", "not a number"),
            ("r=abcd,s=c2FsdA==", "no iteration"),
            ("m=ext,r=abcd,s=c2FsdA==,i=4096", "extension"),
        ] {
            let (mut s, _) = start();
            let e = s.step(msg.as_bytes()).unwrap_err();
            assert!(e.0.contains(why), "{msg}: {e:?}");
        }
        let (mut s, _) = start();
        assert!(s.step(&[0xff, 0xfe]).unwrap_err().0.contains("UTF-8"));
    }

    #[tokio::test]
    async fn plain_and_oauthbearer_first_messages() {
        let (_, m) = Exchange::first(&SaslConfig::new(SaslMechanism::Plain, "alice", "s3cret"))
            .await
            .unwrap();
        assert_eq!(m, b"\0alice\0s3cret");
        struct Fixed;
        #[async_trait]
        impl TokenProvider for Fixed {
            async fn token(&self) -> Result<OAuthToken, String> {
                Ok(OAuthToken {
                    value: Secret::new("tok"),
                    extensions: BTreeMap::from([("traceId".to_owned(), "1".to_owned())]),
                })
            }
        }
        let (mut x, m) = Exchange::first(&SaslConfig::oauthbearer(Arc::new(Fixed)))
            .await
            .unwrap();
        assert_eq!(m, b"n,,\x01auth=Bearer tok\x01traceId=1\x01\x01");
        assert_eq!(
            x.step(b"{\"status\":\"invalid_token\"}").unwrap(),
            Some(vec![1])
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = SaslConfig::new(SaslMechanism::ScramSha512, "alice", "hunter2");
        let shown = format!("{c:?} {} {:?}", c.password, c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"));
        assert_eq!(
            SaslMechanism::parse("scram-sha-512"),
            Some(SaslMechanism::ScramSha512)
        );
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
    }
}

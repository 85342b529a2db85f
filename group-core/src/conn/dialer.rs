//! The pluggable dialer: every connection the client opens goes through one, so users can add
//! TLS, a proxy or their own resolver, and the harness can inject faults into one member's traffic
//! (as franz-go's tests do with their chaos dialer).

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream.
pub trait IoStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> IoStream for T {}

/// A boxed stream, as dialers return it.
pub type BoxedStream = Box<dyn IoStream>;

/// Opens connections to `host:port` addresses.
#[async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `addr`.
    async fn dial(&self, addr: &str) -> io::Result<BoxedStream>;
}

/// Plain TCP with a connect timeout and `TCP_NODELAY`.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    /// How long a connect may take (`socket.connection.setup.timeout.ms`, 10 s).
    pub connect_timeout: Duration,
}

impl Default for TcpDialer {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[async_trait]
impl Dialer for TcpDialer {
    async fn dial(&self, addr: &str) -> io::Result<BoxedStream> {
        let s = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )
            })??;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }
}

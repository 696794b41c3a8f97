//! Where Iggy is and how one logged-in TCP connection to it is made.

use iggy::prelude::{
    Client, ClientWrapper, IggyClient, IggyDuration, IggyError, TcpClient, TcpClientConfig,
};
use iggy_common::{
    ConnectionString, ConnectionStringUtils, TcpConnectionStringOptions, TransportProtocol,
};
use std::{str::FromStr, sync::Arc, time::Duration};

/// A connection string the gateway cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid Iggy connection string (expected iggy://user:password@host:port): {0}")]
pub struct TargetError(String);

/// A parsed Iggy address with credentials, from which connections are made.
#[derive(Debug, Clone)]
pub struct IggyTarget {
    config: Arc<TcpClientConfig>,
}

impl IggyTarget {
    /// Parses `iggy://user:password@host:port[?options]` (also `iggy+tcp://`).
    pub fn parse(connection_string: &str) -> Result<Self, TargetError> {
        match ConnectionStringUtils::parse_protocol(connection_string) {
            Ok(TransportProtocol::Tcp) => {}
            Ok(other) => {
                return Err(TargetError(format!(
                    "the gateway talks to Iggy over TCP, not {other}"
                )));
            }
            Err(error) => return Err(TargetError(error.to_string())),
        }
        let parsed = ConnectionString::<TcpConnectionStringOptions>::from_str(connection_string)
            .map_err(|error| TargetError(error.to_string()))?;
        let mut config: TcpClientConfig = parsed.into();
        // The gateway owns reconnection: a connection that breaks is replaced
        // by a fresh client (see the pool), and a write is never replayed
        // behind the caller's back, so an unknown outcome stays visible.
        config.reconnection.enabled = false;
        config.nodelay = true;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The `host:port` this target points at, for logs.
    pub fn server_address(&self) -> &str {
        &self.config.server_address
    }

    /// Opens a new connection and logs in; fails at once when Iggy is down.
    pub async fn connect(&self, timeout: Duration) -> Result<IggyClient, IggyError> {
        let mut config = (*self.config).clone();
        config.heartbeat_interval = IggyDuration::from(Duration::from_secs(5));
        let transport = TcpClient::create(Arc::new(config))?;
        let client = IggyClient::new(ClientWrapper::Tcp(transport));
        match tokio::time::timeout(timeout, client.connect()).await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(IggyError::CannotEstablishConnection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_connection_string() {
        let target = IggyTarget::parse("iggy://iggy:secret@127.0.0.1:8090").expect("valid");
        assert_eq!(target.server_address(), "127.0.0.1:8090");
    }

    #[test]
    fn rejects_a_string_without_credentials() {
        assert!(IggyTarget::parse("iggy://127.0.0.1:8090").is_err());
        assert!(IggyTarget::parse("http://iggy:iggy@127.0.0.1:8090").is_err());
    }
}

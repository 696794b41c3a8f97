//! Who is calling, and what they may do: scopes per service area and an
//! optional allow-list of streams.

use serde::Deserialize;
use std::fmt;

/// An area of the API a principal may be allowed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Publish, PublishBatch, PublishEvent, PublishEventBatch.
    Publish,
    /// Subscribe, Poll, Ack.
    Subscribe,
    /// Every AdminService call.
    Admin,
}

impl Scope {
    /// Every scope, for principals that are not restricted.
    pub const ALL: [Scope; 3] = [Scope::Publish, Scope::Subscribe, Scope::Admin];

    /// Parses `publish`, `subscribe` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "publish" => Some(Self::Publish),
            "subscribe" => Some(Self::Subscribe),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The scope's name as written in key files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the caller was identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An API key, by its id (never its secret).
    Key(String),
    /// A verified client certificate, by its subject's common name.
    Certificate(String),
    /// Nobody: authentication is off; rate limits key on the peer address.
    Peer(String),
}

/// A stream as a request names it: by name or by numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRef<'a> {
    /// The stream's name.
    Name(&'a str),
    /// The stream's numeric id.
    Id(u32),
}

/// An authenticated caller (or the anonymous one when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    identity: Identity,
    scopes: Vec<Scope>,
    /// `None`: every stream. `Some`: only these names or numeric ids.
    streams: Option<Vec<String>>,
    /// Written once: logs, spans and rate-limit keys read it on every call.
    label: String,
}

impl Principal {
    /// A principal with `scopes`, restricted to `streams` when given.
    pub fn new(identity: Identity, scopes: Vec<Scope>, streams: Option<Vec<String>>) -> Self {
        let label = match &identity {
            Identity::Key(id) => format!("key:{id}"),
            Identity::Certificate(name) => format!("cert:{name}"),
            Identity::Peer(address) => format!("peer:{address}"),
        };
        Self {
            identity,
            scopes,
            streams,
            label,
        }
    }

    /// A principal allowed everything, identified by `identity`.
    pub fn unrestricted(identity: Identity) -> Self {
        Self::new(identity, Scope::ALL.to_vec(), None)
    }

    /// How the principal was identified.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A label for logs, metrics and rate-limit keys: `key:ID`,
    /// `cert:COMMON_NAME` or `peer:ADDRESS`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The label as the keyed rate limiter's key type.
    pub(crate) fn label_key(&self) -> &String {
        &self.label
    }

    /// Whether the principal may call methods of `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the principal may use `stream`. An allow-list matches the
    /// stream as the request names it: its name, or its numeric id written
    /// in decimal.
    pub fn may_use_stream(&self, stream: StreamRef<'_>) -> bool {
        let Some(allowed) = &self.streams else {
            return true;
        };
        allowed.iter().any(|entry| match stream {
            StreamRef::Name(name) => entry == name,
            StreamRef::Id(id) => entry.parse::<u32>() == Ok(id),
        })
    }

    /// Whether the principal is restricted to a list of streams.
    pub fn has_stream_allow_list(&self) -> bool {
        self.streams.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_list_matches_names_and_decimal_ids_only() {
        let principal = Principal::new(
            Identity::Key("orders".into()),
            vec![Scope::Publish],
            Some(vec!["orders".into(), "7".into()]),
        );
        assert!(principal.may_use_stream(StreamRef::Name("orders")));
        assert!(principal.may_use_stream(StreamRef::Id(7)));
        assert!(!principal.may_use_stream(StreamRef::Name("payments")));
        assert!(!principal.may_use_stream(StreamRef::Id(1)));
        assert!(principal.has_scope(Scope::Publish));
        assert!(!principal.has_scope(Scope::Admin));
    }

    #[test]
    fn an_unrestricted_principal_may_do_everything() {
        let principal = Principal::unrestricted(Identity::Peer("127.0.0.1".into()));
        assert!(Scope::ALL.iter().all(|scope| principal.has_scope(*scope)));
        assert!(principal.may_use_stream(StreamRef::Name("anything")));
        assert_eq!(principal.label(), "peer:127.0.0.1");
    }
}

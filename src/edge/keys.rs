//! API keys: loaded from a TOML or JSON file and/or an environment variable,
//! held only as SHA-256 digests, and matched in constant time.
//!
//! Key file (TOML; JSON has the same shape, `{"keys": [...]}`):
//!
//! ```toml
//! [[keys]]
//! id = "orders-writer"              # shown in logs and metrics
//! secret_sha256 = "9f86d0…"         # hex SHA-256 of the secret clients send
//! scopes = ["publish", "subscribe"] # publish, subscribe, admin
//! streams = ["orders"]              # optional allow-list (names or ids)
//! tls_common_name = "orders-svc"    # optional: this client certificate CN is this key
//! requests_per_second = 100         # optional, overrides the global limit
//! request_burst = 200
//! messages_per_second = 50000
//! message_burst = 100000
//! ```
//!
//! The environment variable holds plain secrets, hashed at load:
//! `id:secret:scope+scope[:stream+stream]`, entries separated by `;`.

use super::{
    Principal,
    principal::{Identity, Scope},
    rate_limits::RateSpec,
};
use serde::Deserialize;
use std::{collections::HashSet, num::NonZeroU32, path::Path, sync::Arc};
use subtle::ConstantTimeEq;

/// The shortest secret accepted from the environment variable.
pub const MIN_SECRET_CHARS: usize = 16;

/// Why the keys could not be loaded; each names the file or entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read API keys file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or JSON of the expected shape.
    #[error("API keys file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// One key entry is unusable.
    #[error("API key {entry} is invalid: {message}")]
    Entry {
        /// The key's id, or its position when it has none.
        entry: String,
        /// What is wrong.
        message: String,
    },
}

/// One configured key: who it is and the limits it overrides.
#[derive(Debug)]
pub struct ApiKey {
    /// The principal a request with this key acts as.
    pub principal: Arc<Principal>,
    /// Per-key request rate, overriding the global one.
    pub requests: Option<RateSpec>,
    /// Per-key message rate, overriding the global one.
    pub messages: Option<RateSpec>,
    digest: Option<[u8; 32]>,
    tls_common_name: Option<String>,
}

impl ApiKey {
    /// The key's id.
    pub fn id(&self) -> &str {
        match self.principal.identity() {
            Identity::Key(id) => id,
            Identity::Certificate(name) | Identity::Peer(name) => name,
        }
    }
}

/// Every configured key.
#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret_sha256: Option<String>,
    scopes: Vec<Scope>,
    streams: Option<Vec<String>>,
    tls_common_name: Option<String>,
    requests_per_second: Option<u32>,
    request_burst: Option<u32>,
    messages_per_second: Option<u32>,
    message_burst: Option<u32>,
}

impl ApiKeys {
    /// Loads the keys of `file` (TOML, or JSON when it ends in `.json`) and
    /// of `env` (the environment variable's value); either may be absent.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self, KeysError> {
        let mut keys = Vec::new();
        if let Some(path) = file {
            keys.extend(read_file(path)?);
        }
        if let Some(text) = env {
            keys.extend(parse_env(text)?);
        }
        check_unique(&keys)?;
        Ok(Self { keys })
    }

    /// Keys built directly, for tests and embedding.
    pub fn from_keys(keys: Vec<ApiKey>) -> Result<Self, KeysError> {
        check_unique(&keys)?;
        Ok(Self { keys })
    }

    /// Whether any key is configured (authentication is on).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.iter()
    }

    /// The key whose secret is `presented`. Every stored digest is compared
    /// in constant time, so timing tells nothing about which key (if any)
    /// came close.
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for key in &self.keys {
            if let Some(stored) = &key.digest
                && bool::from(stored.ct_eq(&digest))
            {
                found = Some(key);
            }
        }
        found
    }

    /// The key bound to a client certificate with this common name.
    pub fn by_common_name(&self, common_name: &str) -> Option<&ApiKey> {
        self.keys
            .iter()
            .find(|key| key.tls_common_name.as_deref() == Some(common_name))
    }
}

/// A key for `id` with `secret` (hashed here) and `scopes`.
pub fn key_with_secret(
    id: &str,
    secret: &str,
    scopes: Vec<Scope>,
    streams: Option<Vec<String>>,
) -> ApiKey {
    ApiKey {
        principal: Arc::new(Principal::new(Identity::Key(id.into()), scopes, streams)),
        requests: None,
        messages: None,
        digest: Some(sha256(secret.as_bytes())),
        tls_common_name: None,
    }
}

/// The hex SHA-256 of a secret, as a key file stores it.
pub fn secret_digest_hex(secret: &str) -> String {
    hex::encode(sha256(secret.as_bytes()))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn read_file(path: &Path) -> Result<Vec<ApiKey>, KeysError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
        path: shown.clone(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
    parse_file(&shown, &text, is_json)
}

/// The keys of a keys file's `text` (JSON or TOML); `shown` names the file
/// in errors.
pub(crate) fn parse_file(shown: &str, text: &str, is_json: bool) -> Result<Vec<ApiKey>, KeysError> {
    let parsed: KeyFile = if is_json {
        serde_json::from_str(text).map_err(|error| error.to_string())
    } else {
        toml::from_str(text).map_err(|error| error.to_string())
    }
    .map_err(|message| KeysError::Parse {
        path: shown.to_owned(),
        message: message.trim().replace('\n', " "),
    })?;
    parsed.keys.into_iter().map(from_entry).collect()
}

fn from_entry(entry: KeyEntry) -> Result<ApiKey, KeysError> {
    let fail = |message: &str| KeysError::Entry {
        entry: entry.id.clone(),
        message: message.to_owned(),
    };
    check_id(&entry.id)?;
    let digest = entry
        .secret_sha256
        .as_deref()
        .map(|text| {
            let bytes = hex::decode(text.trim())
                .map_err(|_| fail("secret_sha256 must be 64 hexadecimal digits"))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| fail("secret_sha256 must be 64 hexadecimal digits"))
        })
        .transpose()?;
    if digest.is_none() && entry.tls_common_name.is_none() {
        return Err(fail("needs secret_sha256 or tls_common_name"));
    }
    if entry.scopes.is_empty() {
        return Err(fail(
            "scopes must name at least one of publish, subscribe, admin",
        ));
    }
    let requests = rate(entry.requests_per_second, entry.request_burst)
        .map_err(|message| fail(&format!("requests_per_second/request_burst {message}")))?;
    let messages = rate(entry.messages_per_second, entry.message_burst)
        .map_err(|message| fail(&format!("messages_per_second/message_burst {message}")))?;
    Ok(ApiKey {
        principal: Arc::new(Principal::new(
            Identity::Key(entry.id),
            entry.scopes,
            entry.streams,
        )),
        requests,
        messages,
        digest,
        tls_common_name: entry.tls_common_name,
    })
}

fn rate(per_second: Option<u32>, burst: Option<u32>) -> Result<Option<RateSpec>, String> {
    match (per_second, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("sets a burst without a rate".into()),
        (Some(per_second), burst) => {
            let per_second =
                NonZeroU32::new(per_second).ok_or_else(|| "must be at least 1".to_owned())?;
            let burst = match burst {
                None => per_second,
                Some(burst) => {
                    NonZeroU32::new(burst).ok_or_else(|| "must be at least 1".to_owned())?
                }
            };
            Ok(Some(RateSpec { per_second, burst }))
        }
    }
}

pub(crate) fn parse_env(text: &str) -> Result<Vec<ApiKey>, KeysError> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let fail = |message: String| KeysError::Entry {
                entry: format!("#{} of IGGY_GRPC_API_KEYS", index + 1),
                message,
            };
            let parts: Vec<&str> = entry.split(':').collect();
            let [id, secret, scopes, rest @ ..] = parts.as_slice() else {
                return Err(fail("must be id:secret:scope+scope[:stream+stream]".into()));
            };
            if rest.len() > 1 {
                return Err(fail("has too many `:`-separated parts".into()));
            }
            check_id(id)?;
            if secret.chars().count() < MIN_SECRET_CHARS {
                return Err(fail(format!(
                    "its secret must be at least {MIN_SECRET_CHARS} characters"
                )));
            }
            let scopes = scopes
                .split('+')
                .map(|name| {
                    Scope::parse(name).ok_or_else(|| {
                        fail(format!(
                            "unknown scope `{name}` (use publish, subscribe, admin)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let streams = rest
                .first()
                .map(|list| list.split('+').map(str::to_owned).collect());
            Ok(key_with_secret(id, secret, scopes, streams))
        })
        .collect()
}

fn check_id(id: &str) -> Result<(), KeysError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(KeysError::Entry {
            entry: format!("`{id}`"),
            message: "id must be 1-64 of letters, digits, `-`, `_`, `.`".into(),
        })
    }
}

fn check_unique(keys: &[ApiKey]) -> Result<(), KeysError> {
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    for key in keys {
        if !ids.insert(key.id()) {
            return Err(KeysError::Entry {
                entry: key.id().to_owned(),
                message: "the id is used twice".into(),
            });
        }
        if let Some(digest) = &key.digest
            && !digests.insert(*digest)
        {
            return Err(KeysError::Entry {
                entry: key.id().to_owned(),
                message: "its secret is the same as another key's".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A key file in the temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file_with(extension: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "iggy-grpc-keys-{}.{extension}",
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&path, text).expect("write key file");
        TempFile(path)
    }

    #[test]
    fn a_toml_file_key_authenticates_with_its_secret_only() {
        let digest = secret_digest_hex("correct horse battery staple");
        let file = file_with(
            "toml",
            &format!(
                "[[keys]]\nid = \"writer\"\nsecret_sha256 = \"{digest}\"\n\
                 scopes = [\"publish\"]\nstreams = [\"orders\"]\nrequests_per_second = 5\n"
            ),
        );
        let keys = ApiKeys::load(Some(&file.0), None).expect("loads");
        let key = keys
            .authenticate("correct horse battery staple")
            .expect("matches");
        assert_eq!(key.id(), "writer");
        assert!(key.principal.has_scope(Scope::Publish));
        assert!(!key.principal.has_scope(Scope::Admin));
        assert_eq!(key.requests.map(|rate| rate.burst.get()), Some(5));
        assert!(keys.authenticate("correct horse battery stapl").is_none());
        assert!(keys.authenticate(&digest).is_none());
    }

    #[test]
    fn a_json_file_and_the_environment_add_up() {
        let file = file_with(
            "json",
            r#"{"keys": [{"id": "svc", "tls_common_name": "svc.internal", "scopes": ["subscribe"]}]}"#,
        );
        let keys = ApiKeys::load(
            Some(&file.0),
            Some("ops:0123456789abcdef-ops:admin+publish; ci:0123456789abcdef-ci:subscribe:a+b"),
        )
        .expect("loads");
        assert_eq!(keys.iter().count(), 3);
        assert_eq!(
            keys.by_common_name("svc.internal").map(ApiKey::id),
            Some("svc")
        );
        let ci = keys.authenticate("0123456789abcdef-ci").expect("ci key");
        assert!(ci.principal.has_stream_allow_list());
        assert!(
            keys.authenticate("0123456789abcdef-ops")
                .expect("ops key")
                .principal
                .has_scope(Scope::Admin)
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let cases = [
            ("x:short:publish", "at least 16"),
            ("x:0123456789abcdef:root", "unknown scope `root`"),
            ("x:0123456789abcdef", "id:secret:scope"),
            ("bad id:0123456789abcdef:admin", "id must be"),
            (
                "a:0123456789abcdef:admin;a:0123456789abcdef-2:admin",
                "used twice",
            ),
            (
                "a:0123456789abcdef:admin;b:0123456789abcdef:admin",
                "same as another",
            ),
        ];
        for (env, expected) in cases {
            let error = ApiKeys::load(None, Some(env)).expect_err(env).to_string();
            assert!(error.contains(expected), "{env}: {error}");
        }
        let file = file_with(
            "toml",
            "[[keys]]\nid = \"x\"\nscopes = [\"admin\"]\nsecret_sha256 = \"zz\"\n",
        );
        let error = ApiKeys::load(Some(&file.0), None).expect_err("bad digest");
        assert!(error.to_string().contains("64 hexadecimal"), "{error}");
        let file = file_with("toml", "[[keys]]\nid = \"x\"\nscopes = [\"admin\"]\n");
        let error = ApiKeys::load(Some(&file.0), None).expect_err("no secret");
        assert!(error.to_string().contains("needs secret_sha256"), "{error}");
    }
}

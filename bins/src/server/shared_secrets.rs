//! What every server sharing a store must hold alike, kept in the store: the CA that signs the
//! serving certificates (agents pin its checksum, kubeconfigs carry it) and the key registration
//! tokens are made with. Replicas on one etcd thus agree without files copied between them; the
//! one thing they are given alike is the secrets key (`--secrets-key-file`), which seals the private
//! halves here as it seals every other secret at rest.
//!
//! Each is a [`ServerSecret`]. On the first start against a store it is made — or taken from the
//! data directory, where earlier versions kept it (`tls/ca.crt` with `tls/ca.key`, and
//! `registration.key`), so that agents already deployed and import commands already handed out
//! keep working. Servers starting at once may all make one: the store keeps the first created, and
//! the others read it back and use that.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rancher_core::model::{ServerSecret, ServerSecretSpec};
use rancher_core::store::{Api, Store, StoreError};
use secrecy::ExposeSecret;

use super::registration::TokenKey;
use super::secrets::{SealError, Sealer};
use super::tls::{self, CaPair, TlsError};

/// The [`ServerSecret`] holding the servers' CA.
pub(crate) const SERVING_CA: &str = "serving-ca";
/// The [`ServerSecret`] holding the registration key.
pub(crate) const REGISTRATION_KEY: &str = "registration-key";

const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";
const TOKEN_KEY: &str = "key";

/// Why a shared secret could not be read, made or kept.
#[derive(Debug, thiserror::Error)]
pub enum SharedSecretError {
    /// The store failed.
    #[error("{name}: {source}")]
    Store {
        /// The [`ServerSecret`]'s name.
        name: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A sealed value does not open with this server's secrets key.
    #[error(
        "{name} in the store does not open with this server's secrets key ({source}): every server \
         sharing the store needs the same key (--secrets-key-file)"
    )]
    Open {
        /// The [`ServerSecret`]'s name.
        name: &'static str,
        /// Why it did not open.
        #[source]
        source: SealError,
    },
    /// A stored value is missing or not what it should be.
    #[error("{name} in the store is damaged: {problem}")]
    Damaged {
        /// The [`ServerSecret`]'s name.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Making a CA, or reading the one of an earlier version, failed.
    #[error("{name}: {source}")]
    Tls {
        /// The [`ServerSecret`]'s name.
        name: &'static str,
        /// The TLS error.
        #[source]
        source: TlsError,
    },
    /// The registration key of an earlier version could not be read.
    #[error("{name}: {source}")]
    Io {
        /// The [`ServerSecret`]'s name.
        name: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The servers' CA: from the store, else from `tls_dir` (an earlier version's), else new.
///
/// # Errors
/// [`SharedSecretError`] naming what failed.
pub(crate) async fn serving_ca(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    tls_dir: &Path,
) -> Result<CaPair, SharedSecretError> {
    let name = SERVING_CA;
    let data = load_or_create(store, name, || {
        let (pair, from) = match tls::ca_in_dir(tls_dir) {
            Ok(Some(pair)) => (pair, "the data directory's"),
            Ok(None) => {
                (tls::generate_ca().map_err(|source| SharedSecretError::Tls { name, source })?, "a new")
            }
            Err(source) => return Err(SharedSecretError::Tls { name, source }),
        };
        tracing::info!(
            "keeping {from} serving CA in the store (tls/ca.key in the data directory is not read again)"
        );
        Ok(BTreeMap::from([
            (CERT.to_owned(), pair.cert_pem),
            (KEY.to_owned(), sealer.seal(pair.key_pem.expose_secret())),
        ]))
    })
    .await?;
    let cert_pem = value(name, &data, CERT)?.to_owned();
    let key_pem =
        sealer.open(value(name, &data, KEY)?).map_err(|source| SharedSecretError::Open { name, source })?;
    Ok(CaPair { cert_pem, key_pem })
}

/// The registration key: from the store, else from `data_dir` (an earlier version's), else new.
///
/// # Errors
/// [`SharedSecretError`] naming what failed.
pub(crate) async fn registration_key(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    data_dir: &Path,
) -> Result<TokenKey, SharedSecretError> {
    let name = REGISTRATION_KEY;
    let data = load_or_create(store, name, || {
        let (key, from) = match TokenKey::in_dir(data_dir) {
            Ok(Some(key)) => (key, "the data directory's"),
            Ok(None) => (TokenKey::generate(), "a new"),
            Err(source) => return Err(SharedSecretError::Io { name, source }),
        };
        tracing::info!(
            "keeping {from} registration key in the store (registration.key in the data directory is not \
             read again)"
        );
        Ok(BTreeMap::from([(TOKEN_KEY.to_owned(), sealer.seal(&STANDARD.encode(key.bytes())))]))
    })
    .await?;
    let opened = sealer
        .open(value(name, &data, TOKEN_KEY)?)
        .map_err(|source| SharedSecretError::Open { name, source })?;
    STANDARD
        .decode(opened.expose_secret())
        .ok()
        .and_then(|bytes| TokenKey::from_slice(&bytes))
        .ok_or_else(|| SharedSecretError::Damaged { name, problem: "the key is not 32 bytes".into() })
}

fn value<'a>(
    name: &'static str,
    data: &'a BTreeMap<String, String>,
    field: &str,
) -> Result<&'a str, SharedSecretError> {
    data.get(field)
        .map(String::as_str)
        .ok_or_else(|| SharedSecretError::Damaged { name, problem: format!("no {field}") })
}

/// The stored secret's data, or `make`'s stored first. When another server created it meanwhile,
/// that one is read back and used (what `make` made is dropped).
async fn load_or_create(
    store: &Arc<dyn Store>,
    name: &'static str,
    make: impl FnOnce() -> Result<BTreeMap<String, String>, SharedSecretError>,
) -> Result<BTreeMap<String, String>, SharedSecretError> {
    let api = Api::<ServerSecret>::all(store.clone());
    let store_err = |source| SharedSecretError::Store { name, source };
    if let Some(found) = api.get_opt(name).await.map_err(store_err)? {
        return Ok(found.spec.data);
    }
    let made = ServerSecret::new(name, ServerSecretSpec { data: make()? });
    match api.create(&made).await {
        Ok(created) => Ok(created.spec.data),
        Err(StoreError::AlreadyExists { .. }) => Ok(api.get(name).await.map_err(store_err)?.spec.data),
        Err(e) => Err(store_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::store::MemoryStore;

    use super::*;

    async fn stored(store: &Arc<dyn Store>, name: &str) -> ServerSecret {
        Api::<ServerSecret>::all(store.clone()).get(name).await.unwrap()
    }

    #[tokio::test]
    async fn servers_sharing_a_store_and_a_key_share_the_ca_and_the_registration_key() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealer = Sealer::from_key(&[1; 32]);
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

        let ca1 = serving_ca(&store, &sealer, one.path()).await.unwrap();
        let ca2 = serving_ca(&store, &sealer, two.path()).await.unwrap();
        assert_eq!(ca1.cert_pem, ca2.cert_pem);
        assert_eq!(ca1.key_pem.expose_secret(), ca2.key_pem.expose_secret());
        let key1 = registration_key(&store, &sealer, one.path()).await.unwrap();
        let key2 = registration_key(&store, &sealer, two.path()).await.unwrap();
        assert_eq!(key1.bytes(), key2.bytes());

        // The private halves are stored sealed.
        let ca = stored(&store, SERVING_CA).await;
        assert!(!ca.spec.data[KEY].contains("PRIVATE KEY") && ca.spec.data[KEY].starts_with("sealed:v1:"));
        assert!(ca.spec.data[CERT].contains("BEGIN CERTIFICATE"));
        let key = stored(&store, REGISTRATION_KEY).await;
        assert!(!key.spec.data[TOKEN_KEY].contains(&STANDARD.encode(key1.bytes())));

        // A server given another secrets key is told so, by name, and changes nothing.
        let other = Sealer::from_key(&[2; 32]);
        let err = serving_ca(&store, &other, one.path()).await.unwrap_err().to_string();
        assert!(err.contains("serving-ca") && err.contains("--secrets-key-file"), "{err}");
        let err = registration_key(&store, &other, one.path()).await.unwrap_err().to_string();
        assert!(err.contains("registration-key") && err.contains("--secrets-key-file"), "{err}");
        assert_eq!(stored(&store, SERVING_CA).await, ca);
    }

    #[tokio::test]
    async fn what_an_earlier_version_kept_in_the_data_directory_moves_to_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealer = Sealer::from_key(&[1; 32]);
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        std::fs::create_dir(&tls_dir).unwrap();
        let old = tls::generate_ca().unwrap();
        std::fs::write(tls_dir.join("ca.crt"), &old.cert_pem).unwrap();
        std::fs::write(tls_dir.join("ca.key"), old.key_pem.expose_secret()).unwrap();
        std::fs::write(dir.path().join("registration.key"), [9u8; 32]).unwrap();

        let ca = serving_ca(&store, &sealer, &tls_dir).await.unwrap();
        assert_eq!(ca.cert_pem, old.cert_pem, "agents pinning the old CA keep working");
        let key = registration_key(&store, &sealer, dir.path()).await.unwrap();
        assert_eq!(key.bytes(), &[9u8; 32], "import commands handed out keep working");

        // From now on the store's copy is the one read.
        std::fs::remove_dir_all(&tls_dir).unwrap();
        std::fs::remove_file(dir.path().join("registration.key")).unwrap();
        assert_eq!(serving_ca(&store, &sealer, &tls_dir).await.unwrap().cert_pem, old.cert_pem);
        assert_eq!(registration_key(&store, &sealer, dir.path()).await.unwrap().bytes(), &[9u8; 32]);
    }

    #[tokio::test]
    async fn servers_starting_at_once_end_with_the_one_stored_first() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealer = Arc::new(Sealer::from_key(&[1; 32]));
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (store, sealer) = (store.clone(), sealer.clone());
                tokio::spawn(async move {
                    let dir = tempfile::tempdir().unwrap();
                    let ca = serving_ca(&store, &sealer, dir.path()).await.unwrap();
                    let key = registration_key(&store, &sealer, dir.path()).await.unwrap();
                    (ca.cert_pem, *key.bytes())
                })
            })
            .collect();
        let mut seen = Vec::new();
        for start in starts {
            seen.push(start.await.unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "every server uses the same CA and key");
    }

    #[tokio::test]
    async fn a_damaged_secret_is_reported_not_replaced() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealer = Sealer::from_key(&[1; 32]);
        let api = Api::<ServerSecret>::all(store.clone());
        api.create(&ServerSecret::new(REGISTRATION_KEY, ServerSecretSpec::default())).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = registration_key(&store, &sealer, dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("registration-key in the store is damaged: no key"), "{err}");
        let short = sealer.seal(&STANDARD.encode([1u8; 5]));
        let mut damaged = api.get(REGISTRATION_KEY).await.unwrap();
        damaged.spec.data.insert(TOKEN_KEY.into(), short);
        api.update(&damaged).await.unwrap();
        let err = registration_key(&store, &sealer, dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("not 32 bytes"), "{err}");
    }
}

//! How one key of the shared ring is written in Redis: a JSON value under its hex id, holding
//! when it was made and its material, wrapped by the key-encryption key when one is configured.
//!
//! The wrapping's associated data covers the key's id, its creation time and its algorithm
//! (format 2), so whoever can write Redis cannot make an old key look new (and current) or
//! relabel it. Entries wrapped before (format 1, the id alone) still open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::sealing::{KEY_ID_LEN, KeyId, SealingKey};

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct StoredKey {
    /// Unix seconds when the key was made.
    pub created: u64,
    pub alg: String,
    /// Base64 of the 32-byte key, or of the key sealed by the key-encryption key.
    pub material: String,
    pub wrapped: bool,
    /// What the wrapping's associated data covers: 1 the id alone (older entries), 2 the id,
    /// `created` and `alg`.
    #[serde(default = "format_1")]
    pub format: u8,
}

fn format_1() -> u8 {
    1
}

const ALG: &str = "A256GCM";

/// The associated data that binds wrapped material to its entry.
fn associated_data(format: u8, id: &KeyId, created: u64, alg: &str) -> Vec<u8> {
    let mut aad = id.to_vec();
    if format >= 2 {
        aad.extend_from_slice(&created.to_be_bytes());
        aad.extend_from_slice(alg.as_bytes());
    }
    aad
}

impl StoredKey {
    pub fn new(material: [u8; 32], created: u64, kek: Option<&SealingKey>, id: &KeyId) -> Self {
        let (bytes, wrapped) = match kek {
            Some(kek) => (kek.seal(&associated_data(2, id, created, ALG), &material), true),
            None => (material.to_vec(), false),
        };
        StoredKey { created, alg: ALG.into(), material: STANDARD.encode(bytes), wrapped, format: 2 }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("key entry serialises")
    }

    pub fn decode(field: &str, value: &str) -> Result<(KeyId, Self), String> {
        let id: KeyId = hex::decode(field)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("key id is not {KEY_ID_LEN} hex bytes"))?;
        let stored: StoredKey = serde_json::from_str(value).map_err(|e| e.to_string())?;
        if stored.alg != ALG || !matches!(stored.format, 1 | 2) {
            return Err(format!("unsupported algorithm {}", stored.alg));
        }
        Ok((id, stored))
    }

    pub fn unwrap(&self, kek: Option<&SealingKey>, id: &KeyId) -> Result<[u8; 32], String> {
        let bytes = STANDARD.decode(&self.material).map_err(|e| e.to_string())?;
        let plain = match (self.wrapped, kek) {
            (true, Some(kek)) => kek
                .open(&associated_data(self.format, id, self.created, &self.alg), &bytes)
                .map_err(|_| "key-encryption key does not open it (wrong key, or the entry was altered)".to_owned())?,
            (true, None) => return Err("wrapped, but this node has no key-encryption key".into()),
            (false, Some(_)) => {
                return Err("not wrapped, but this node requires a key-encryption key".into());
            }
            (false, None) => bytes,
        };
        plain.try_into().map_err(|_| "key material is not 32 bytes".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sealing::random;
    use super::*;

    #[test]
    fn a_wrapped_entry_opens_only_as_written() {
        let kek = SealingKey::new(*b"kek\0\0\0\0\0", &random());
        let id: KeyId = random();
        let material: [u8; 32] = random();
        let stored = StoredKey::new(material, 1000, Some(&kek), &id);
        let (_, read) = StoredKey::decode(&hex::encode(id), &stored.encode()).unwrap();
        assert_eq!(read.unwrap(Some(&kek), &id).unwrap(), material);

        let mut newer = read.clone();
        newer.created = 5000;
        assert!(newer.unwrap(Some(&kek), &id).is_err(), "a changed creation time must not open");
        let mut downgraded = read.clone();
        downgraded.format = 1;
        assert!(downgraded.unwrap(Some(&kek), &id).is_err(), "a changed format must not open");
        assert!(read.unwrap(Some(&kek), &random()).is_err(), "another id must not open");
    }

    #[test]
    fn entries_wrapped_under_the_id_alone_still_open() {
        let kek = SealingKey::new(*b"kek\0\0\0\0\0", &random());
        let id: KeyId = random();
        let material: [u8; 32] = random();
        let legacy = format!(
            r#"{{"created":1000,"alg":"A256GCM","material":"{}","wrapped":true}}"#,
            STANDARD.encode(kek.seal(&id, &material))
        );
        let (_, read) = StoredKey::decode(&hex::encode(id), &legacy).unwrap();
        assert_eq!(read.unwrap(Some(&kek), &id).unwrap(), material);
    }
}

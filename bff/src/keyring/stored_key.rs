//! How one key of the shared ring is written in Redis: a JSON value under its hex id, holding
//! when it was made and its material, wrapped by the key-encryption key when one is configured.

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
}

impl StoredKey {
    pub fn new(material: [u8; 32], created: u64, kek: Option<&SealingKey>, id: &KeyId) -> Self {
        let (bytes, wrapped) = match kek {
            Some(kek) => (kek.seal(id, &material), true),
            None => (material.to_vec(), false),
        };
        StoredKey { created, alg: "A256GCM".into(), material: STANDARD.encode(bytes), wrapped }
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
        if stored.alg != "A256GCM" {
            return Err(format!("unsupported algorithm {}", stored.alg));
        }
        Ok((id, stored))
    }

    pub fn unwrap(&self, kek: Option<&SealingKey>, id: &KeyId) -> Result<[u8; 32], String> {
        let bytes = STANDARD.decode(&self.material).map_err(|e| e.to_string())?;
        let plain = match (self.wrapped, kek) {
            (true, Some(kek)) => kek.open(id, &bytes).map_err(|_| "key-encryption key does not open it".to_owned())?,
            (true, None) => return Err("wrapped, but this node has no key-encryption key".into()),
            (false, Some(_)) => {
                return Err("not wrapped, but this node requires a key-encryption key".into());
            }
            (false, None) => bytes,
        };
        plain.try_into().map_err(|_| "key material is not 32 bytes".to_owned())
    }
}

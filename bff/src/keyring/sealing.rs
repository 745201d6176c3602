//! AES-256-GCM sealing with a key id in front, so a blob says which key opens it.
//!
//! Layout: `version (1) | key id (8) | nonce (12) | ciphertext + tag (16)`. The nonce is random
//! (96 bits); keys rotate long before random nonces come near their collision bound. The caller's
//! associated data (the store key) binds a blob to its slot: a blob copied to another session's
//! key does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

pub const KEY_ID_LEN: usize = 8;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

pub type KeyId = [u8; KEY_ID_LEN];

/// Why a blob did not open. None of these is the caller's fault to report as a 500: a blob that
/// does not open is treated as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed under a key this node does not have")]
    UnknownKey(KeyId),
    #[error("sealed value failed authentication (tampered, or wrong key)")]
    Tampered,
}

/// A 256-bit AEAD key and its id.
pub struct SealingKey {
    pub id: KeyId,
    key: LessSafeKey,
}

impl SealingKey {
    pub fn new(id: KeyId, material: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, material).expect("32 bytes is an AES-256 key");
        SealingKey { id, key: LessSafeKey::new(unbound) }
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .expect("AES-GCM seal of an in-memory buffer");
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (id, nonce, body) = split(blob)?;
        if id != self.id {
            return Err(OpenError::UnknownKey(id));
        }
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| OpenError::Tampered)?;
        Ok(plain.to_vec())
    }
}

/// The key id a blob claims, without opening it.
pub fn key_id_of(blob: &[u8]) -> Result<KeyId, OpenError> {
    split(blob).map(|(id, _, _)| id)
}

fn split(blob: &[u8]) -> Result<(KeyId, [u8; NONCE_LEN], &[u8]), OpenError> {
    if blob.len() < HEADER_LEN + AES_256_GCM.tag_len() || blob[0] != VERSION {
        return Err(OpenError::Malformed);
    }
    let id: KeyId = blob[1..1 + KEY_ID_LEN].try_into().expect("length checked");
    let nonce: [u8; NONCE_LEN] = blob[1 + KEY_ID_LEN..HEADER_LEN].try_into().expect("length checked");
    Ok((id, nonce, &blob[HEADER_LEN..]))
}

/// Fresh random bytes for key material and ids.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::new(random(), &random())
    }

    #[test]
    fn round_trip() {
        let k = key();
        let blob = k.seal(b"slot", b"secret claims");
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(b"slot", &blob).unwrap(), b"secret claims");
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let k = key();
        let blob = k.seal(b"slot", b"value");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(k.open(b"slot", &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn other_slot_or_other_key_is_refused() {
        let k = key();
        let blob = k.seal(b"slot-a", b"value");
        assert_eq!(k.open(b"slot-b", &blob), Err(OpenError::Tampered));
        assert!(matches!(key().open(b"slot-a", &blob), Err(OpenError::UnknownKey(_))));
        assert_eq!(k.open(b"slot-a", b"short"), Err(OpenError::Malformed));
    }
}

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

#[cfg(test)]
mod properties {
    //! Any blob read back from the store, as an attacker with write access to Redis might leave
    //! it: opening never panics, random bytes never open, and a sealed blob that was changed in
    //! any way (a byte flipped, cut short, lengthened, moved to another slot) never opens.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: usize, mask: u8 },
        Truncate(usize),
        Append(Vec<u8>),
        OtherSlot,
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
            any::<usize>().prop_map(Mutation::Truncate),
            proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
            Just(Mutation::OtherSlot),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_bytes_never_open(blob in proptest::collection::vec(any::<u8>(), 0..96), version_one in any::<bool>()) {
            let key = SealingKey::new([7; KEY_ID_LEN], &[9; 32]);
            let mut blob = blob;
            if version_one && blob.len() > KEY_ID_LEN {
                // Past the version and key id checks, so the AEAD itself has to refuse it.
                blob[0] = VERSION;
                blob[1..1 + KEY_ID_LEN].copy_from_slice(&key.id);
            }
            let _ = key_id_of(&blob);
            prop_assert!(key.open(b"slot", &blob).is_err());
        }

        #[test]
        fn a_tampered_blob_never_opens(
            plaintext in proptest::collection::vec(any::<u8>(), 0..64),
            changes in proptest::collection::vec(mutation(), 1..4),
        ) {
            let key = SealingKey::new([7; KEY_ID_LEN], &[9; 32]);
            let original = key.seal(b"slot", &plaintext);
            let mut blob = original.clone();
            let mut slot: &[u8] = b"slot";
            for change in changes {
                match change {
                    Mutation::Flip { at, mask } if !blob.is_empty() => {
                        let at = at % blob.len();
                        blob[at] ^= mask;
                    }
                    Mutation::Flip { .. } => {}
                    Mutation::Truncate(len) => blob.truncate(len % (blob.len() + 1)),
                    Mutation::Append(extra) => blob.extend_from_slice(&extra),
                    Mutation::OtherSlot => slot = b"another slot",
                }
            }
            let opened = key.open(slot, &blob);
            if blob == original && slot == b"slot" {
                prop_assert_eq!(opened, Ok(plaintext));
            } else {
                prop_assert!(opened.is_err(), "a changed blob opened");
            }
        }
    }
}

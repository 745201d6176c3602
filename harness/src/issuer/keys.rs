//! The mock issuer's signing keys and the JWKS that publishes them.
//!
//! RSA keys are fixed test keys shipped with the harness (`keys/*.pem`, PKCS#1): `primary` signs
//! by default, `rotated` replaces it when a test rotates the issuer's keys, and `rogue` signs
//! tokens that must be refused (same `kid` as the published key, different key). The ES256 key
//! is made at start-up.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const PRIMARY_PEM: &str = include_str!("keys/primary.pem");
const ROTATED_PEM: &str = include_str!("keys/rotated.pem");
const ROGUE_PEM: &str = include_str!("keys/rogue.pem");

/// Which algorithm the issuer signs id_tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    fn rsa(kid: &str, pem: &str) -> Self {
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("shipped RSA test key parses");
        let pair = RsaKeyPair::from_der(encoding.as_bytes()).expect("shipped RSA test key is PKCS#1");
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        SigningKey { kid: kid.to_owned(), alg: Algorithm::RS256, encoding, jwk }
    }

    fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("P-256 key encodes");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }
}

/// The keys the issuer holds; `current` signs, `published` is what the JWKS shows.
pub struct KeySet {
    pub current: SigningKey,
    pub published: Vec<Value>,
    pub rogue: SigningKey,
}

impl KeySet {
    pub fn new(alg: SigningAlg) -> Self {
        let current = match alg {
            SigningAlg::Rs256 => SigningKey::rsa("key-1", PRIMARY_PEM),
            SigningAlg::Es256 => SigningKey::ec("key-1"),
        };
        let published = vec![current.jwk.clone()];
        KeySet { current, published, rogue: SigningKey::rsa("key-1", ROGUE_PEM) }
    }

    /// Switches signing to a new RSA key with a new `kid`; the JWKS shows only the new key.
    pub fn rotate(&mut self) {
        self.current = SigningKey::rsa("key-2", ROTATED_PEM);
        self.published = vec![self.current.jwk.clone()];
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": self.published })
    }
}

//! The mock issuer's signing keys, the JWKS that publishes them, and the signing of its JWTs.
//!
//! RSA keys are fixed test keys shipped with the harness (`keys/*.pem`, PKCS#1): `primary` signs
//! by default, `rotated` replaces it when a test rotates the issuer's keys, and `rogue` signs
//! tokens that must be refused (same `kid` as the published key, different key). The ES256 key
//! is made at start-up.
//!
//! Each key is parsed once and kept as an aws-lc key pair: parsing (and checking) an RSA key
//! costs about as much as a signature, and a load test signs one id_token per login.

use std::sync::Arc;

use axum::body::Bytes;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

const PRIMARY_PEM: &str = include_str!("keys/primary.pem");
const ROTATED_PEM: &str = include_str!("keys/rotated.pem");
const ROGUE_PEM: &str = include_str!("keys/rogue.pem");

/// Which algorithm the issuer signs id_tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

enum KeyPairOf {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pair: KeyPairOf,
    pub jwk: Value,
}

impl SigningKey {
    fn rsa(kid: &str, pem: &str) -> Self {
        let der = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("shipped RSA test key parses");
        let pair = RsaKeyPair::from_der(der.as_bytes()).expect("shipped RSA test key is PKCS#1");
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        SigningKey { kid: kid.to_owned(), alg: Algorithm::RS256, pair: KeyPairOf::Rsa(pair), jwk }
    }

    fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        SigningKey { kid: kid.to_owned(), alg: Algorithm::ES256, pair: KeyPairOf::Ec(pair), jwk }
    }

    /// A compact JWS of `claims` under `header` (whose `alg` is this key's).
    pub fn sign(&self, header: &Header, claims: &Map<String, Value>) -> String {
        let header = serde_json::to_vec(header).expect("a JWT header serializes");
        let claims = serde_json::to_vec(claims).expect("JWT claims serialize");
        let mut jws = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            KeyPairOf::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, jws.as_bytes(), &mut signature).expect("RSA signs");
                signature
            }
            KeyPairOf::Ec(pair) => pair.sign(&rng, jws.as_bytes()).expect("ECDSA signs").as_ref().to_vec(),
        };
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        jws
    }
}

/// The keys the issuer holds; `current` signs, the JWKS shows `published`.
pub struct KeySet {
    pub current: Arc<SigningKey>,
    pub rogue: Arc<SigningKey>,
    /// The JWKS document, serialized once per key change.
    jwks: Bytes,
}

impl KeySet {
    pub fn new(alg: SigningAlg) -> Self {
        let current = match alg {
            SigningAlg::Rs256 => SigningKey::rsa("key-1", PRIMARY_PEM),
            SigningAlg::Es256 => SigningKey::ec("key-1"),
        };
        let jwks = Self::document(&current);
        KeySet { current: Arc::new(current), rogue: Arc::new(SigningKey::rsa("key-1", ROGUE_PEM)), jwks }
    }

    fn document(current: &SigningKey) -> Bytes {
        Bytes::from(serde_json::to_vec(&json!({ "keys": [current.jwk] })).expect("JWKS serializes"))
    }

    /// Switches signing to a new RSA key with a new `kid`; the JWKS shows only the new key.
    pub fn rotate(&mut self) {
        let current = SigningKey::rsa("key-2", ROTATED_PEM);
        self.jwks = Self::document(&current);
        self.current = Arc::new(current);
    }

    /// The JWKS document (`{"keys": [...]}`), serialized.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

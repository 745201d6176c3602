//! PKCE (RFC 7636) as the mock issuer checks it: a challenge kept with the code, and the
//! verifier the token request must bring for it.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A PKCE code challenge of an authorization request.
pub(super) struct Challenge {
    pub value: String,
    /// `S256`, else `plain`.
    pub s256: bool,
}

impl Challenge {
    pub(super) fn verified_by(&self, verifier: &str) -> bool {
        if !pkce_string(verifier) {
            return false;
        }
        if self.s256 {
            URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes())) == self.value
        } else {
            verifier == self.value
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]` (verifiers and challenges alike).
pub(super) fn pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

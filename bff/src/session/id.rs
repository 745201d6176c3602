//! The opaque session id: 256 random bits, base64url in the cookie.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const LEN: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; LEN]);

impl SessionId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; LEN];
        aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
        SessionId(bytes)
    }

    /// Parses a cookie value; anything that is not exactly 32 base64url bytes is no id.
    pub fn parse(cookie_value: &str) -> Option<Self> {
        // Decoded on the stack: a longer value does not fit (an error), a shorter one is counted.
        let mut bytes = [0u8; LEN + 3];
        let len = URL_SAFE_NO_PAD.decode_slice(cookie_value, &mut bytes).ok()?;
        Some(SessionId(bytes[..len].try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// A random url-safe token of 256 bits, for `state`, `nonce`, PKCE verifiers and login binding.
pub fn random_token() -> String {
    SessionId::generate().to_cookie_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_its_own_format() {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(&id.to_cookie_value()), Some(id.clone()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&format!("{}A", id.to_cookie_value())), None);
        assert_eq!(SessionId::parse("!!!!"), None);
        assert_ne!(SessionId::generate(), SessionId::generate());
    }
}

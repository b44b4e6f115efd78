//! The signature of a webhook request, as Stripe's: the header
//!
//! ```text
//! X402-Signature: t=1733561234,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//! ```
//!
//! where `v1` is the lowercase hex HMAC-SHA256, keyed with the endpoint's signing secret (the
//! whole `whsec_…` string, as bytes), of `"{t}.{body}"`: the timestamp, a dot, and the raw
//! request body exactly as received. A receiver recomputes it, compares in constant time, and
//! refuses a `t` more than [`TOLERANCE_SECS`] from its own clock (a replayed request). While a
//! secret is being rotated nothing is signed with the old one: the new secret applies from the
//! next attempt.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "X402-Signature";
/// The header carrying the event id (also in the body).
pub const EVENT_ID_HEADER: &str = "X402-Event-Id";
/// The header carrying the event type (also in the body).
pub const EVENT_TYPE_HEADER: &str = "X402-Event-Type";
/// How far a receiver should let `t` be from its clock: 5 minutes.
pub const TOLERANCE_SECS: i64 = 300;

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` signed at `t` (Unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// What a receiver does: `header` is a valid signature of `body` by `secret`, made within
/// `tolerance` seconds of `now`. Any `v1` of the header may match (several during a rotation).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => tags.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    tags.iter()
        .any(|tag| mac(secret, t, body).verify_slice(tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_within_the_tolerance_only() {
        let body = br#"{"id":"evt_1","type":"settlement.mined"}"#;
        let header = sign("whsec_test", 1_000_000, body);
        assert!(header.starts_with("t=1000000,v1="));
        assert!(verify(
            "whsec_test",
            &header,
            body,
            1_000_000,
            TOLERANCE_SECS
        ));
        assert!(verify(
            "whsec_test",
            &header,
            body,
            1_000_300,
            TOLERANCE_SECS
        ));
        assert!(!verify(
            "whsec_test",
            &header,
            body,
            1_000_301,
            TOLERANCE_SECS
        ));
        assert!(!verify(
            "whsec_other",
            &header,
            body,
            1_000_000,
            TOLERANCE_SECS
        ));
        assert!(!verify(
            "whsec_test",
            &header,
            b"{}",
            1_000_000,
            TOLERANCE_SECS
        ));
        assert!(!verify(
            "whsec_test",
            "v1=00",
            body,
            1_000_000,
            TOLERANCE_SECS
        ));
    }

    #[test]
    fn the_signed_string_is_timestamp_dot_body() {
        // Computed independently: printf '%s' '42.{}' | openssl dgst -sha256 -hmac k
        let header = sign("k", 42, b"{}");
        let expected = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
            m.update(b"42.{}");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=42,v1={expected}"));
    }
}

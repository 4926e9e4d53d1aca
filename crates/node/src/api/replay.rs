//! The nonces of state-changing node API requests (exec) seen within the time window, so a
//! captured request cannot be used twice. Kept in memory and bounded: an agent restart forgets
//! them, and a node's clock window (300 s) is the most a forgotten nonce can be reused in, so a
//! restart within five minutes of a captured request is the gap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zgrid_types::auth::RequestAuth;

/// Most nonces kept at once (all signers together).
pub const MAX_NONCES: usize = 10_000;

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This signer used this nonce already.
    Replayed,
    /// [`MAX_NONCES`] are in use; try again later.
    Full,
}

/// The (signer, nonce) pairs seen, each with the Unix time after which it may be forgotten.
#[derive(Debug, Clone, Default)]
pub struct UsedNonces {
    seen: Arc<Mutex<HashMap<(String, String), i64>>>,
}

impl UsedNonces {
    /// Record `auth`'s nonce (already checked to be within `window` seconds of `now`), refusing
    /// one its signer used before.
    pub fn record(&self, auth: &RequestAuth, window: i64, now: i64) -> Result<(), Refused> {
        let mut seen = self.seen.lock().expect("lock");
        let pair = (auth.key.to_string(), auth.nonce.clone());
        if seen.get(&pair).is_some_and(|until| *until >= now) {
            return Err(Refused::Replayed);
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_NONCES {
                return Err(Refused::Full);
            }
        }
        seen.insert(pair, auth.timestamp.saturating_add(window));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use zgrid_types::Keypair;

    use super::*;

    fn signed(key: &Keypair, nonce: &str, ts: i64) -> RequestAuth {
        RequestAuth::sign(key, "GET", "/", ts, nonce.to_owned(), b"")
    }

    #[test]
    fn a_nonce_is_used_once_per_signer_and_forgotten_after_the_window() {
        let (nonces, now) = (UsedNonces::default(), 1_000_000);
        let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        assert_eq!(nonces.record(&signed(&alice, "n1", now), 300, now), Ok(()));
        assert_eq!(nonces.record(&signed(&alice, "n1", now), 300, now + 10), Err(Refused::Replayed));
        // Another signer's nonces are their own.
        assert_eq!(nonces.record(&signed(&bob, "n1", now), 300, now), Ok(()));
        // Past the window the request itself is refused as stale; its nonce may go.
        assert_eq!(nonces.record(&signed(&alice, "n1", now), 300, now + 301), Ok(()));
    }

    #[test]
    fn the_nonces_kept_are_bounded() {
        let (nonces, now) = (UsedNonces::default(), 1_000_000);
        let key = Keypair::from_seed(&[3; 32]);
        for n in 0..MAX_NONCES {
            nonces.record(&signed(&key, &n.to_string(), now), 300, now).unwrap();
        }
        assert_eq!(nonces.record(&signed(&key, "one more", now), 300, now), Err(Refused::Full));
        // Once the window has passed, old ones make room.
        assert_eq!(nonces.record(&signed(&key, "one more", now + 301), 300, now + 301), Ok(()));
        assert_eq!(nonces.seen.lock().unwrap().len(), 1);
    }
}

//! How much the uploads in progress may hold: how many run at once and how many bytes they
//! declare, per signing key and in all. An upload is admitted only once its signature checks,
//! for the length it declared, and holds its share until its [`Permit`] is dropped: when it is
//! stored, refused, or its client goes away. Keys cost nothing to make, so the limits for all
//! keys are what bound the hub; the ones per key keep one uploader from taking all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use zgrid_types::PublicKey;

use crate::error::Refusal;

/// Bounds on the uploads in progress.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Uploads in progress at once, from all keys.
    pub uploads: usize,
    /// Uploads in progress at once from one key.
    pub uploads_per_key: usize,
    /// Bytes the uploads in progress may declare (and so spool), from all keys.
    pub bytes: u64,
    /// Bytes the uploads in progress of one key may declare.
    pub bytes_per_key: u64,
}

impl Default for UploadLimits {
    /// 64 uploads and 32 GiB in all; 16 uploads (twice what `zgrid flist push` sends at once)
    /// and 16 GiB (one import of the largest size) per key.
    fn default() -> Self {
        Self { uploads: 64, uploads_per_key: 16, bytes: 32 << 30, bytes_per_key: 16 << 30 }
    }
}

/// The uploads in progress, counted against [`UploadLimits`].
pub struct Uploads {
    limits: UploadLimits,
    held: Arc<Mutex<Held>>,
}

/// What the uploads in progress hold: in all, and by key.
#[derive(Default)]
struct Held {
    all: Share,
    keys: HashMap<PublicKey, Share>,
}

#[derive(Default, Clone, Copy)]
struct Share {
    uploads: usize,
    bytes: u64,
}

impl Uploads {
    /// No uploads yet.
    pub fn new(limits: UploadLimits) -> Self {
        Self { limits, held: Arc::default() }
    }

    /// Admit an upload of `bytes` signed by `key`, or say which limit it would pass: 429 for
    /// the key's own, 503 for the hub's.
    pub fn admit(&self, key: &PublicKey, bytes: u64) -> Result<Permit, Refusal> {
        let limits = &self.limits;
        let mut held = self.held.lock().expect("upload counters lock");
        let mine = held.keys.get(key).copied().unwrap_or_default();
        if mine.uploads >= limits.uploads_per_key {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you have {} uploads in progress, this hub's limit of concurrent uploads per key; send this one when one of them has finished",
                    mine.uploads
                ),
            ));
        }
        if mine.bytes + bytes > limits.bytes_per_key {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "your uploads in progress would hold {} bytes with this one ({bytes}), more than this hub's limit of {} bytes per key",
                    mine.bytes + bytes,
                    limits.bytes_per_key
                ),
            ));
        }
        if held.all.uploads >= limits.uploads {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this hub is receiving {} uploads, its limit of concurrent uploads; try again shortly",
                    held.all.uploads
                ),
            ));
        }
        if held.all.bytes + bytes > limits.bytes {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the uploads in progress on this hub would hold {} bytes with this one ({bytes}), more than its limit of {} bytes in all; try again shortly",
                    held.all.bytes + bytes,
                    limits.bytes
                ),
            ));
        }
        let share = held.keys.entry(*key).or_default();
        share.uploads += 1;
        share.bytes += bytes;
        held.all.uploads += 1;
        held.all.bytes += bytes;
        Ok(Permit { held: self.held.clone(), key: *key, bytes })
    }
}

/// An admitted upload's share of the limits, given back when dropped.
pub struct Permit {
    held: Arc<Mutex<Held>>,
    key: PublicKey,
    bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("upload counters lock");
        held.all.uploads -= 1;
        held.all.bytes -= self.bytes;
        if let Some(share) = held.keys.get_mut(&self.key) {
            share.uploads -= 1;
            share.bytes -= self.bytes;
            if share.uploads == 0 {
                held.keys.remove(&self.key);
            }
        }
    }
}

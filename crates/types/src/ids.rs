//! Identifiers of users, farms, nodes and workloads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::keys::PublicKey;

/// A user's id, assigned by the explorer at registration.
pub type UserId = u64;

/// A farm's id, assigned by the explorer.
pub type FarmId = u64;

/// A node's id: its ed25519 public key in base58, as in the seed system.
pub type NodeId = PublicKey;

/// A workload's id: 16 lowercase hex characters (64 random bits) chosen by the deployer's client.
///
/// The id is part of what the owner signs, so the explorer cannot run one signed workload twice
/// under two ids; updates keep the id and raise the version.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-f]{16}$", example = "3f9c2a71d04be815")]
pub struct WorkloadId(String);

impl WorkloadId {
    /// Length of the textual id.
    pub const LEN: usize = 16;

    /// The id made of these 64 bits.
    pub fn from_u64(bits: u64) -> Self {
        Self(format!("{bits:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkloadId({})", self.0)
    }
}

/// The text is not 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a workload id: expected 16 lowercase hex characters")]
pub struct BadWorkloadId(pub String);

impl FromStr for WorkloadId {
    type Err = BadWorkloadId;
    fn from_str(s: &str) -> Result<Self, BadWorkloadId> {
        let ok = s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok { Ok(Self(s.to_string())) } else { Err(BadWorkloadId(s.to_string())) }
    }
}

impl<'de> Deserialize<'de> for WorkloadId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_ids_are_sixteen_hex_digits() {
        assert_eq!(WorkloadId::from_u64(255).as_str(), "00000000000000ff");
        assert!("00000000000000ff".parse::<WorkloadId>().is_ok());
        assert!("00000000000000FF".parse::<WorkloadId>().is_err());
        assert!("ff".parse::<WorkloadId>().is_err());
    }
}

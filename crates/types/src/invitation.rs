//! A farm owner's consent for a node to join the farm: a [`FarmInvitation`] signed with the
//! owner's key, handed to the farmer's machine as a text token (`zgrid farm invite` prints it,
//! `zgrid node --farm-invite` sends it with the registration). The explorer checks it against
//! the key of the farm's owner before a node enters a farm or moves to another one; a node
//! already in the farm refreshes its registration without one.
//!
//! An invitation may name one node (it then admits that node only) or none (any node that
//! presents it before it expires: a join token for a rack of machines, to be kept secret like
//! a password).

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{FarmId, NodeId};
use crate::keys::{Keypair, PublicKey};
use crate::signing::{Signable, Signed};

/// Longest validity of an invitation, in seconds (30 days): long enough to set up a rack,
/// short enough that a leaked token stops working.
pub const MAX_INVITATION_SECS: i64 = 30 * 86_400;

/// The prefix of an invitation token.
const TOKEN_PREFIX: &str = "zgfi1.";

/// Longest token accepted, in bytes (a real one is about 330).
const MAX_TOKEN: usize = 1024;

/// "This node may join my farm", signed by the farm's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FarmInvitation {
    /// The farm.
    pub farm_id: FarmId,
    /// The one node admitted; `None` admits any node that presents the invitation.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// Unix time (seconds) after which the invitation admits no one.
    pub expires_at: i64,
}

impl Signable for FarmInvitation {
    const DOMAIN: &'static str = "zgrid/farm-invitation/v1";
}

/// Why an invitation does not admit a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    /// The token is not one `zgrid farm invite` prints.
    #[error("is not a farm invitation token (zgfi1.…): copy the whole line `zgrid farm invite` printed")]
    Malformed,
    /// The invitation is for another farm.
    #[error("is for farm {invited}, not farm {farm}: ask the owner of farm {farm} for an invitation")]
    OtherFarm {
        /// The farm it names.
        invited: FarmId,
        /// The farm asked for.
        farm: FarmId,
    },
    /// The invitation is for another node.
    #[error("is for node {invited}, not node {node}: ask the farm's owner for an invitation for this node")]
    OtherNode {
        /// The node it names (base58).
        invited: String,
        /// The node registering (base58).
        node: String,
    },
    /// The invitation has expired.
    #[error("expired at {expires_at} (now is {now}): ask the farm's owner for a new one")]
    Expired {
        /// When it expired.
        expires_at: i64,
        /// Now.
        now: i64,
    },
    /// The invitation claims a validity longer than allowed.
    #[error("is valid until {expires_at}, more than {MAX_INVITATION_SECS} s from now ({now}); ask for a shorter one")]
    TooLong {
        /// When it would expire.
        expires_at: i64,
        /// Now.
        now: i64,
    },
    /// The signature is not the farm owner's.
    #[error("is not signed by the owner of farm {farm}")]
    NotOwner {
        /// The farm.
        farm: FarmId,
    },
}

/// An invitation into farm `farm_id` for `node_id` (or any node) until `expires_at`, signed
/// by the farm's owner `owner`.
pub fn invite(owner: &Keypair, farm_id: FarmId, node_id: Option<NodeId>, expires_at: i64) -> Signed<FarmInvitation> {
    Signed::sign(FarmInvitation { farm_id, node_id, expires_at }, owner)
}

impl Signed<FarmInvitation> {
    /// The invitation as a token to copy around: `zgfi1.` and base64url of its JSON.
    pub fn to_token(&self) -> String {
        let json = serde_json::to_vec(self).expect("an invitation always serialises");
        format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    /// Parse a token made by [`Signed::to_token`] (surrounding whitespace is ignored).
    pub fn from_token(token: &str) -> Result<Self, InvitationError> {
        let token = token.trim();
        let encoded = token.strip_prefix(TOKEN_PREFIX).filter(|_| token.len() <= MAX_TOKEN);
        let json = encoded
            .and_then(|e| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(e).ok())
            .ok_or(InvitationError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| InvitationError::Malformed)
    }

    /// Check that the invitation admits `node` into `farm`, whose owner has key `owner_key`,
    /// at Unix time `now`.
    pub fn admits(&self, farm: FarmId, node: &NodeId, owner_key: &PublicKey, now: i64) -> Result<(), InvitationError> {
        let invitation = &self.payload;
        if invitation.farm_id != farm {
            return Err(InvitationError::OtherFarm { invited: invitation.farm_id, farm });
        }
        if let Some(invited) = invitation.node_id.filter(|n| n != node) {
            return Err(InvitationError::OtherNode { invited: invited.to_string(), node: node.to_string() });
        }
        if invitation.expires_at <= now {
            return Err(InvitationError::Expired { expires_at: invitation.expires_at, now });
        }
        if invitation.expires_at > now + MAX_INVITATION_SECS {
            return Err(InvitationError::TooLong { expires_at: invitation.expires_at, now });
        }
        self.verify(owner_key).map_err(|_| InvitationError::NotOwner { farm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_admits_only_its_node_into_its_farm_until_it_expires() {
        let (owner, other, node, stranger) = (
            Keypair::from_seed(&[1; 32]),
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[3; 32]).public(),
            Keypair::from_seed(&[4; 32]).public(),
        );
        let now = 1_000_000;
        let invite = |node_id, expires_at, key: &Keypair| invite(key, 7, node_id, expires_at);
        let good = invite(Some(node), now + 60, &owner);
        let token = good.to_token();
        assert!(token.starts_with("zgfi1.") && token.len() < MAX_TOKEN, "{token}");
        let parsed = Signed::<FarmInvitation>::from_token(&format!(" {token}\n")).unwrap();
        assert_eq!(parsed, good);
        assert_eq!(parsed.admits(7, &node, &owner.public(), now), Ok(()));
        assert!(matches!(good.admits(8, &node, &owner.public(), now), Err(InvitationError::OtherFarm { .. })));
        assert!(matches!(good.admits(7, &stranger, &owner.public(), now), Err(InvitationError::OtherNode { .. })));
        assert!(matches!(good.admits(7, &node, &owner.public(), now + 60), Err(InvitationError::Expired { .. })));
        let forged = invite(Some(node), now + 60, &other);
        assert_eq!(forged.admits(7, &node, &owner.public(), now), Err(InvitationError::NotOwner { farm: 7 }));
        let anyone = invite(None, now + 60, &owner);
        assert_eq!(anyone.admits(7, &stranger, &owner.public(), now), Ok(()));
        let forever = invite(None, now + MAX_INVITATION_SECS + 1, &owner);
        assert!(matches!(forever.admits(7, &node, &owner.public(), now), Err(InvitationError::TooLong { .. })));
        for bad in ["", "zgfi1.", "zgfi1.***", "eyJ9", &token[..token.len() - 4]] {
            assert_eq!(Signed::<FarmInvitation>::from_token(bad), Err(InvitationError::Malformed), "{bad}");
        }
    }
}

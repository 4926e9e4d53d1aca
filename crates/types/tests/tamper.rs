//! Property: once a workload is signed, changing any single field of it (or of its signature)
//! makes it either unparseable or unverifiable. This is the check the explorer and the node
//! both rely on, run through the shared verification code.

use proptest::prelude::*;
use zgrid_types::testing::{mutations, workload_spec};
use zgrid_types::{Keypair, Signed, WorkloadSpec};

const NOW: i64 = 1_800_000_000;

fn node() -> zgrid_types::NodeId {
    Keypair::from_seed(&[42; 32]).public()
}

/// An owner key and a valid spec in its name, of any kind.
fn owned_spec() -> impl Strategy<Value = (Keypair, WorkloadSpec)> {
    any::<[u8; 32]>().prop_flat_map(|seed| {
        let key = Keypair::from_seed(&seed);
        workload_spec(7, key.public(), node(), NOW).prop_map(move |spec| (key.clone(), spec))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn changing_any_field_after_signing_breaks_verification((owner, spec) in owned_spec()) {
        prop_assert!(spec.validate(NOW).is_ok(), "generator made an invalid spec: {:?}", spec.validate(NOW));
        let signed = Signed::sign(spec, &owner);
        prop_assert!(signed.verify_owner().is_ok());

        let doc = serde_json::to_value(&signed).unwrap();
        let mut parsed_but_refused = 0;
        let all = mutations(&doc);
        for (path, mutated) in &all {
            match serde_json::from_value::<Signed<WorkloadSpec>>(mutated.clone()) {
                Err(_) => {}
                // Removing a field that holds its default value changes nothing.
                Ok(changed) if changed == signed => {}
                Ok(changed) => {
                    prop_assert!(changed.verify_owner().is_err(), "changing {} kept the signature valid", path);
                    prop_assert!(
                        changed.verify(&owner.public()).is_err(),
                        "changing {} kept the signature valid for the owner's key", path
                    );
                    parsed_but_refused += 1;
                }
            }
        }
        // Many changes keep the document well-formed, so the signature (not the parser) is what
        // refuses them.
        prop_assert!(parsed_but_refused * 4 > all.len(), "only {} of {} mutations parsed", parsed_but_refused, all.len());
    }

    #[test]
    fn a_workload_signed_by_anyone_but_its_owner_does_not_verify((owner, spec) in owned_spec(), other in any::<[u8; 32]>()) {
        let other = Keypair::from_seed(&other);
        prop_assume!(other.public() != owner.public());
        prop_assert!(Signed::sign(spec, &other).verify_owner().is_err());
    }
}

//! Property: once a workload is signed, changing any single field of it (or of its signature)
//! makes it either unparseable or unverifiable. This is the check the explorer and the node
//! both rely on, run through the shared verification code.

use proptest::prelude::*;
use zgrid_types::testing::{mutations, sign, workload_spec};
use zgrid_types::{Keypair, Signed, WorkloadSpec};

const NOW: i64 = 1_800_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn changing_any_field_after_signing_breaks_verification(
        seed in any::<[u8; 32]>(),
        spec in workload_spec(7, Keypair::from_seed(&[42; 32]).public(), NOW),
    ) {
        let owner = Keypair::from_seed(&seed);
        prop_assert!(spec.validate(NOW).is_ok(), "generator made an invalid spec: {:?}", spec.validate(NOW));
        let signed = sign(spec, &owner);
        prop_assert!(signed.verify(&owner.public()).is_ok());

        let doc = serde_json::to_value(&signed).unwrap();
        let mut parsed_but_refused = 0;
        let all = mutations(&doc);
        for (path, mutated) in &all {
            match serde_json::from_value::<Signed<WorkloadSpec>>(mutated.clone()) {
                Err(_) => {}
                // Removing a field that holds its default value changes nothing.
                Ok(changed) if changed == signed => {}
                Ok(changed) => {
                    prop_assert!(
                        changed.verify(&owner.public()).is_err(),
                        "changing {} kept the signature valid", path
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
    fn a_signature_does_not_verify_under_another_key(
        spec in workload_spec(7, Keypair::from_seed(&[42; 32]).public(), NOW),
    ) {
        let signed = sign(spec, &Keypair::from_seed(&[1; 32]));
        prop_assert!(signed.verify(&Keypair::from_seed(&[2; 32]).public()).is_err());
    }
}

//! Security: the customer-managed keys everything else encrypts with.
//! (IAM roles are a common kind: each domain declares the roles it needs.)

pub mod kms_key;

use crate::naming::KEY_PURPOSES;

use super::registry::Registry;

/// One customer-managed key per purpose.
pub fn register(r: &mut Registry) {
    // Customer-managed keys, one per purpose: everything below that stores
    // data encrypts it with one of them.
    for purpose in KEY_PURPOSES {
        r.add(
            format!("kms-key:{purpose}"),
            kms_key::KmsKey::new(purpose),
            vec![],
        );
    }
}

//! Security: the customer-managed keys everything else encrypts with, and
//! the service-linked role one key's policy names.
//! (IAM roles are a common kind: each domain declares the roles it needs.)

pub mod kms_key;
pub mod service_linked_role;

use crate::naming::KEY_PURPOSES;

use super::registry::{Registry, dep};

/// One customer-managed key per purpose.
pub fn register(r: &mut Registry) {
    r.add(
        service_linked_role::STEP,
        service_linked_role::AutoScalingServiceLinkedRole,
        vec![],
    );
    // Customer-managed keys, one per purpose: everything below that stores
    // data encrypts it with one of them.
    for purpose in KEY_PURPOSES {
        let deps = if purpose == "ebs" {
            vec![dep(
                kms_key::AUTOSCALING_SLR_STEP,
                "the key policy names Auto Scaling's service-linked role, and KMS refuses a \
                 policy whose principal does not exist",
            )]
        } else {
            vec![]
        };
        r.add(
            format!("kms-key:{purpose}"),
            kms_key::KmsKey::new(purpose),
            deps,
        );
    }
}

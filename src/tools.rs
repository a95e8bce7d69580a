//! Operator tools built into the `lms` binary: the data-set generator (`lms seed`) and the
//! load generator (`lms bench`). Both talk to the server only through its gRPC API.

pub mod backup;
pub mod bench;
pub mod health;
pub mod reference;
pub mod seed;

use sha2::{Digest as _, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// Adds `authorization: Bearer <token>` to every call of a client.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// Returns an interceptor sending `token`.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?;
        Ok(Self(value))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel whose calls carry a bearer token.
pub type Authed =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Returns a UUID (v4 layout) that depends only on `seed` and `label`: the same inputs give
/// the same request ids and event ids on every run, which makes a re-run a replay.
pub fn stable_id(seed: u64, label: &str) -> String {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(label.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Returns a 64-bit number that depends only on `seed` and `label`, to seed a per-item generator.
pub fn stable_u64(seed: u64, label: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(label.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_are_uuids_that_depend_on_seed_and_label() {
        let first = stable_id(42, "event/OFF-000001/3");
        assert_eq!(first, stable_id(42, "event/OFF-000001/3"));
        assert_ne!(first, stable_id(43, "event/OFF-000001/3"));
        assert_ne!(first, stable_id(42, "event/OFF-000001/4"));
        assert!(crate::domain::is_uuid(&first));
        assert_eq!(stable_u64(1, "a"), stable_u64(1, "a"));
        assert_ne!(stable_u64(1, "a"), stable_u64(1, "b"));
    }
}

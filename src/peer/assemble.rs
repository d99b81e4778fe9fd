//! Reassembly: once every chunk is held, make the finished file and check the whole-file hash.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use super::swarm::Swarm;
use crate::storage;
use crate::store::StoreError;
use crate::{Error, Result};

/// Reassembles and verifies the file. `Ok(None)` when the whole-file hash did not match: every
/// chunk was checked again, the bad ones dropped from `have`, and they will be fetched again.
///
/// # Errors
///
/// A store error other than a hash mismatch.
pub(super) async fn finish(swarm: &Arc<Swarm>) -> Result<Option<PathBuf>> {
    match storage::call(&swarm.store, |s| s.assemble()).await? {
        Ok(path) => Ok(Some(path)),
        Err(e @ StoreError::FileHashMismatch { .. }) => {
            warn!("{e}; checking every chunk again");
            let bad = storage::call(&swarm.store, |store| {
                let m = store.manifest();
                m.chunk_ids()
                    .filter(|&id| {
                        store
                            .read_chunk(id)
                            .map(|d| crate::storage::verify(m, id, &d).is_err())
                            .unwrap_or(true)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
            if bad.is_empty() {
                // Every chunk matches the manifest, yet the whole does not: the manifest
                // contradicts itself, and fetching again would only repeat this.
                return Err(Error::InconsistentManifest(format!(
                    "{e}, yet all {} chunks match their hashes: the owner's manifest of {:?} is \
                     inconsistent (its file hash does not belong to its chunk hashes); \
                     the chunks are kept in {}",
                    swarm.manifest.chunk_count(),
                    swarm.manifest.name,
                    swarm.config.dir.display()
                )));
            }
            warn!(
                "{} chunks failed their hash on disk; fetching them again",
                bad.len()
            );
            swarm.drop_bad(&bad);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

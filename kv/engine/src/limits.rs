//! Limits shared by every engine, so that the memory engine rejects exactly
//! what the on-disk engine cannot store.

use crate::{Error, Result, WriteBatch, WriteOp};

/// The longest key an engine accepts, in bytes (fjall's limit). Empty keys
/// are not accepted either.
pub const MAX_KEY_LEN: usize = 65_535;

/// Checks that `key` can be stored: not empty, at most [`MAX_KEY_LEN`] bytes.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Engine("empty keys are not allowed".to_string()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::Engine(format!(
            "key of {} bytes is longer than the limit of {MAX_KEY_LEN} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Checks every key of `batch` before anything is applied, so that a bad
/// key fails the whole batch.
pub(crate) fn check_batch(batch: &WriteBatch) -> Result<()> {
    for op in batch.ops() {
        let (WriteOp::Put { key, .. } | WriteOp::Delete { key, .. }) = op;
        check_key(key)?;
    }
    Ok(())
}

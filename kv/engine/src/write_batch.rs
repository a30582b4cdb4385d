use crate::Cf;

/// One operation inside a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` in `cf` to `value`.
    Put { cf: Cf, key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` from `cf` (a no-op if it is absent).
    Delete { cf: Cf, key: Vec<u8> },
}

/// A list of puts and deletes applied atomically, in order, across column
/// families. Later operations on the same key win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    sync: bool,
}

impl WriteBatch {
    /// An empty, unsynced batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.ops.push(WriteOp::Put { cf, key: key.to_vec(), value: value.to_vec() });
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.ops.push(WriteOp::Delete { cf, key: key.to_vec() });
    }

    /// Adds an operation.
    pub fn push(&mut self, op: WriteOp) {
        self.ops.push(op);
    }

    /// Marks the batch as synced: [`crate::Engine::write`] returns only once
    /// it is durable.
    pub fn sync(mut self) -> Self {
        self.sync = true;
        self
    }

    /// Sets whether the batch is synced.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Whether the batch must be durable when the write returns.
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Consumes the batch, giving its operations.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

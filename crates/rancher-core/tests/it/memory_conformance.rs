//! The conformance suite against [`MemoryStore`].

use std::sync::Arc;

use crate::conformance::{Fixture, TEST_HISTORY};
use futures::FutureExt;
use rancher_core::store::MemoryStore;

async fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::with_history(TEST_HISTORY)),
        compact: Box::new(|_| async {}.boxed()),
        keep: Box::new(()),
    }
}

conformance_suite!(memory());

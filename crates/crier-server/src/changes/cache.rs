//! Table facts (row level security on or off, primary key) and column privileges, kept
//! for a second.
//!
//! Asking the database for them on every batch cost more than everything else the capture
//! loop does (measured: 70-92 % of its time at 1,000 changes/s, and most of a database
//! core spent planning the same two catalog queries). They change only with DDL or
//! GRANT/REVOKE, so they are remembered for [`TTL`], and a table's facts are forgotten at
//! once when pgoutput describes the table again (which it does after a change to its
//! columns). Row visibility itself is never cached: policies see the data as it is.
//!
//! The cache belongs to the capture loop's task, so it needs no lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crier_postgres::catalog::{CatalogError, TableInfo};
use tokio::time::Instant;

use super::database::TableCatalog;

/// How long a table's facts and a role's column privileges are trusted: an `ALTER TABLE
/// ... ENABLE ROW LEVEL SECURITY` or a `REVOKE` applies to changes captured from a second
/// after it on.
pub(super) const TTL: Duration = Duration::from_secs(1);

/// Columns a role may select, shared by every change of a batch.
pub(super) type Columns = Arc<HashSet<String>>;

#[derive(Debug, Default)]
pub(super) struct CatalogCache {
    tables: HashMap<u32, (Instant, Option<Arc<TableInfo>>)>,
    /// By (table, role), with when it was read.
    selectable: HashMap<(u32, String), (Instant, Columns)>,
}

impl CatalogCache {
    /// The table's facts; `None` when the table no longer exists.
    pub(super) async fn table_info(
        &mut self,
        catalog: &dyn TableCatalog,
        relation: u32,
    ) -> Result<Option<Arc<TableInfo>>, CatalogError> {
        if let Some((at, info)) = self.tables.get(&relation)
            && at.elapsed() < TTL
        {
            return Ok(info.clone());
        }
        let info = catalog.table_info(relation).await?.map(Arc::new);
        self.tables.insert(relation, (Instant::now(), info.clone()));
        Ok(info)
    }

    /// The columns `role` may select on `relation`, if remembered and fresh.
    pub(super) fn selectable(&self, relation: u32, role: &str) -> Option<Columns> {
        // A borrowed key would need a custom key type; roles are short.
        let (at, columns) = self.selectable.get(&(relation, role.to_owned()))?;
        (at.elapsed() < TTL).then(|| Arc::clone(columns))
    }

    pub(super) fn remember_selectable(&mut self, relation: u32, role: String, columns: Columns) {
        self.selectable
            .insert((relation, role), (Instant::now(), columns));
    }

    /// pgoutput described the table again: its shape may have changed.
    pub(super) fn forget_table(&mut self, relation: u32) {
        self.tables.remove(&relation);
        self.selectable.retain(|(table, _), _| *table != relation);
    }

    /// Drops what has expired, so tables and roles no longer seen do not pile up.
    pub(super) fn prune(&mut self) {
        self.tables.retain(|_, (at, _)| at.elapsed() < TTL);
        self.selectable.retain(|_, (at, _)| at.elapsed() < TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn privileges_are_trusted_for_the_ttl_and_forgotten_with_their_table() {
        let mut cache = CatalogCache::default();
        let columns = Arc::new(HashSet::from(["id".to_owned()]));
        cache.remember_selectable(7, "anon".into(), Arc::clone(&columns));
        assert_eq!(cache.selectable(7, "anon"), Some(Arc::clone(&columns)));
        assert_eq!(cache.selectable(7, "authenticated"), None);
        tokio::time::advance(TTL).await;
        assert_eq!(cache.selectable(7, "anon"), None, "expired");
        cache.remember_selectable(7, "anon".into(), Arc::clone(&columns));
        cache.remember_selectable(8, "anon".into(), Arc::clone(&columns));
        cache.forget_table(7);
        assert_eq!(cache.selectable(7, "anon"), None);
        assert!(cache.selectable(8, "anon").is_some());
        tokio::time::advance(TTL).await;
        cache.prune();
        assert!(cache.selectable.is_empty());
    }
}

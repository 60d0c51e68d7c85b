//! The checks a subscription passes before it goes live, with Supabase's messages for
//! each failure: the role exists, every named table is in the publication, and every
//! filter column is a column of its table.

use std::sync::Arc;

use crier_postgres::filter::supabase_inspect_conditions;

use super::subscriptions::{Binding, Subscription};
use super::{DeferredJoin, Feed, answer_join, send_system};

/// What the client reads when the database cannot be reached.
const DATABASE_UNREACHABLE: &str = "Realtime was unable to connect to the project database";
/// The start of every Supabase message for a subscription it cannot make.
const UNABLE: &str = "Unable to subscribe to changes with given parameters.";

/// Checks a pending subscription and either activates it or drops it, telling the channel
/// which. A subscription whose channel left meanwhile is neither activated nor answered.
///
/// A subscription that passes is confirmed only once the replication slot exists (at
/// once, except while the capture loop is still creating it on a node's first start):
/// "Subscribed to PostgreSQL" promises that every row committed after it is captured.
pub(super) async fn check_and_activate(
    feed: &Feed,
    subscription: &Arc<Subscription>,
    deferred: Option<DeferredJoin>,
) {
    let checked = async {
        let outcome = check(feed, subscription).await;
        // `None`: the node shut down while waiting for the slot.
        (outcome.is_err() || feed.slot_ready().await).then_some(outcome)
    };
    let outcome = match &deferred {
        None => checked.await,
        Some(join) => match tokio::time::timeout(join.timeout, checked).await {
            Ok(outcome) => outcome,
            Err(_) => Some(Err(format!(
                "PostgresChangesSubscribeTimeout: postgres changes were not live within {} ms",
                join.timeout.as_millis()
            ))),
        },
    };
    let Some(outcome) = outcome else {
        return;
    };
    if feed.index.get(subscription.id).is_none() {
        return;
    }
    match outcome {
        Ok(()) => {
            subscription.activate();
            if let Some(join) = &deferred {
                answer_join(subscription, join, Ok(()));
            }
            send_system(subscription, "ok", "Subscribed to PostgreSQL");
        }
        Err(message) => {
            feed.index.remove(subscription.id);
            tracing::debug!(topic = %subscription.topic, %message, "postgres changes subscription refused");
            match &deferred {
                Some(join) => answer_join(subscription, join, Err(&message)),
                None => send_system(subscription, "error", &message),
            }
        }
    }
}

async fn check(feed: &Feed, subscription: &Subscription) -> Result<(), String> {
    let unreachable = |err: crier_postgres::catalog::CatalogError| {
        tracing::warn!(error = %err, "postgres changes: catalog lookup failed");
        DATABASE_UNREACHABLE.to_owned()
    };
    let catalog = &*feed.database;
    let role = subscription.identity().role.clone();
    if !catalog.role_exists(&role).await.map_err(unreachable)? {
        return Err(format!(
            "{UNABLE} Exception: ERROR 22023 (invalid_parameter_value) role \"{role}\" does not exist"
        ));
    }
    let published = catalog
        .publication_tables(&feed.config.publication)
        .await
        .map_err(unreachable)?;
    for binding in &subscription.bindings {
        let in_publication = published.iter().any(|(schema, table)| {
            (binding.schema == "*" || &binding.schema == schema)
                && (binding.table == "*" || &binding.table == table)
        });
        if !in_publication {
            return Err(not_enabled(binding));
        }
        if binding.filter.is_none() && binding.select.is_none() {
            continue;
        }
        if binding.table == "*" || binding.schema == "*" {
            // A wildcard names no table whose columns could be checked; a condition on a
            // column a table lacks simply never matches its rows. (`select` on a wildcard
            // was refused when the binding was parsed.)
            continue;
        }
        let columns = catalog
            .table_columns(&binding.schema, &binding.table)
            .await
            .map_err(unreachable)?
            .unwrap_or_default();
        let known = |column: &str| columns.iter().any(|c| c == column);
        if let Some(missing) = binding
            .filter
            .iter()
            .flat_map(|filter| filter.columns())
            .find(|column| !known(column))
        {
            return Err(format!(
                "{UNABLE} Exception: ERROR P0001 (raise_exception) invalid column for filter {missing}"
            ));
        }
        if let Some(missing) = binding
            .select
            .iter()
            .flat_map(|s| s.iter())
            .find(|c| !known(c.as_str()))
        {
            return Err(format!(
                "{UNABLE} Exception: ERROR P0001 (raise_exception) invalid column for select {missing}"
            ));
        }
    }
    Ok(())
}

/// Supabase's message for a binding that names no table of the publication.
fn not_enabled(binding: &Binding) -> String {
    let filters = supabase_inspect_conditions(binding.filter_text.as_deref().unwrap_or(""));
    let select = match &binding.select {
        None => "nil".to_owned(),
        Some(columns) => {
            let quoted: Vec<String> = columns.iter().map(|c| format!("{c:?}")).collect();
            format!("[{}]", quoted.join(", "))
        }
    };
    format!(
        "{UNABLE} Please check Realtime is enabled for the given connect parameters: \
         [event: {}, schema: {}, table: {}, filters: {filters}, select: {select}]",
        binding.event.label(),
        binding.schema,
        binding.table,
    )
}

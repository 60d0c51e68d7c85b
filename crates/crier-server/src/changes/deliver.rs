//! One batch of changes: rendered once each, matched against the subscriptions of their
//! table, authorized, and queued to every subscriber that may see it.
//!
//! Authorization asks the database, but per batch rather than per subscriber: one query
//! for the columns each role may select on each table, and, for tables with row level
//! security, one check per distinct (role, claims) group for all of the batch's rows of
//! that table, every group of the batch asked together (`RowAuthorizer::
//! visible_rows_by_group`: one pipelined round trip per pooled connection). Every query
//! of a batch runs at once, over the catalog's pool. Nothing is
//! queued before every answer is in, so a failed query fails the whole batch, which the
//! slot then sends again.
//!
//! A check looks the row up as it is now, so it must see the change's transaction as
//! ended. Decoding can hand a transaction over a moment before other sessions see it
//! (its commit record is written just before it ends), so a batch with rows to check
//! first waits until the database sees all of their transactions as ended.
//!
//! A change's `data` object is serialized once per role (roles see different columns);
//! subscribers of one channel topic whose bindings matched the same ids share one frame.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crier_postgres::catalog::{CatalogError, TableInfo};
use crier_postgres::render::RenderedChange;
use crier_postgres::replication::ChangeKind;
use crier_postgres::rls::GroupQuestion;
use crier_postgres::types::TypeCatalog;
use crier_protocol::events::POSTGRES_CHANGES;
use futures_util::future::try_join_all;
use serde_json::value::RawValue;

use super::Feed;
use super::cache::CatalogCache;
use super::capture::{CaptureError, Captured};
use super::database::ChangeDatabase;
use super::subscriptions::{Identity, Selection, Subscription};
use crate::fanout::Outgoing;
use crate::outbound::{ConnHandle, Outbound, PushError, Pushed};

/// Longest wait for a batch's transactions to count as ended (see
/// `TableCatalog::wait_until_ended`). Checking before would find no row and drop the change
/// for everyone, so past it the batch fails and comes again from the slot: a commit held
/// up that long (a synchronous standby that is away) delays delivery, it does not lose it.
const END_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A change that has subscribers, rendered.
struct Work {
    rendered: RenderedChange,
    relation: u32,
    /// Its transaction.
    xid: u32,
    /// Whether each target must pass a row level security check.
    needs_rls: bool,
    targets: Vec<Target>,
}

/// A binding's `select`, borrowed (`None`: every column).
type Columns<'a> = Option<&'a BTreeSet<String>>;

/// One subscriber of one change (one per selection of columns its bindings make).
struct Target {
    subscription: Arc<Subscription>,
    ids: Vec<u32>,
    select: Option<Selection>,
    identity: Arc<Identity>,
}

/// Delivers a batch; an error means nothing of it may be counted as delivered.
pub(super) async fn deliver(
    feed: &Feed,
    types: &TypeCatalog,
    batch: &[Captured],
    cache: &mut CatalogCache,
) -> Result<(), CaptureError> {
    let mut tables: HashMap<u32, Option<Arc<TableInfo>>> = HashMap::new();
    let catalog = &*feed.database;
    let mut work: Vec<Work> = Vec::new();
    for captured in batch {
        let change = &captured.change;
        let relation = &change.relation;
        let candidates = feed.index.candidates(&relation.namespace, &relation.name);
        if candidates.is_empty() {
            continue;
        }
        let table = match tables.get(&relation.id) {
            Some(table) => table.clone(),
            None => {
                let table = cache.table_info(catalog, relation.id).await?;
                tables.insert(relation.id, table.clone());
                table
            }
        };
        let Some(table) = table else {
            // Dropped since: nothing left to authorize against, and nobody to tell.
            tracing::debug!(table = %relation.name, "skipping a change of a dropped table");
            continue;
        };
        let rendered = RenderedChange::new(change, captured.commit_time_micros, types, &table);
        let targets: Vec<Target> = candidates
            .into_iter()
            .flat_map(|subscription| {
                let groups = subscription.matching_ids(
                    &relation.namespace,
                    &relation.name,
                    change.kind,
                    rendered.filter_row(),
                );
                let identity = subscription.identity();
                groups.into_iter().map(move |(select, ids)| Target {
                    subscription: Arc::clone(&subscription),
                    ids,
                    select,
                    identity: Arc::clone(&identity),
                })
            })
            .collect();
        if targets.is_empty() {
            continue;
        }
        // Deletes are never checked (the row is gone), as in Supabase; their old record
        // then carries the primary key only.
        let needs_rls =
            table.rls_enabled && change.kind != ChangeKind::Delete && !table.primary_key.is_empty();
        work.push(Work {
            rendered,
            relation: relation.id,
            xid: captured.xid,
            needs_rls,
            targets,
        });
    }
    if work.is_empty() {
        return Ok(());
    }
    let mut checked_xids: Vec<u32> = work
        .iter()
        .filter(|item| item.needs_rls)
        .map(|item| item.xid)
        .collect();
    checked_xids.dedup();
    if !catalog
        .wait_until_ended(&checked_xids, END_WAIT_LIMIT)
        .await?
    {
        return Err(CaptureError::NotEnded(checked_xids));
    }

    let answers = authorize(catalog, cache, &tables, &work).await?;
    for ((relation, role), columns) in &answers.selectable {
        cache.remember_selectable(*relation, role.clone(), Arc::clone(columns));
    }
    // Change by change, waiting whenever one leaves subscribers over their room mark:
    // a batch of large rows must not pile up in a queue before capture waits.
    let mut next = 0;
    while next < work.len() {
        let lagging;
        (next, lagging) = queue(feed, &work, &answers, next);
        let_queues_drain(feed, lagging).await;
    }
    Ok(())
}

/// Waits until the subscribers this batch left over their room mark have room again, and
/// the node's queues are under their budget. The slot keeps what is not read yet, so
/// capture waits where it must: a burst of changes then slows capture down instead of
/// filling queues, and never gets a subscriber disconnected for being sent a lot at once.
/// A subscriber whose write has waited on its socket past the patience is not waited for
/// (it is left to the slow-consumer rules), so it cannot hold everyone else's changes back.
pub(super) async fn let_queues_drain(feed: &Feed, lagging: Vec<Arc<ConnHandle>>) {
    let flow = &feed.flow;
    let started = tokio::time::Instant::now();
    while feed
        .ledger
        .wait_for_room(&lagging, flow.stall_patience, flow.slow_consumer_timeout)
        .await
        .is_err()
    {
        // Over the node's budget still: the slot holds the changes, so wait on.
        tracing::debug!("postgres changes wait for the node's queues to drain");
    }
    let waited = started.elapsed();
    if waited > Duration::ZERO {
        tracing::debug!(?waited, "postgres changes waited for subscribers' queues");
    }
}

/// What the database said about a batch.
struct Answers {
    /// Columns each role may select, per table.
    selectable: HashMap<(u32, String), Arc<HashSet<String>>>,
    /// Per (table, identity): whether each of the batch's checked rows of that table is
    /// visible, by the row's position in `work`.
    visible: HashMap<(u32, Arc<Identity>), HashMap<usize, bool>>,
}

async fn authorize(
    catalog: &dyn ChangeDatabase,
    cache: &CatalogCache,
    tables: &HashMap<u32, Option<Arc<TableInfo>>>,
    work: &[Work],
) -> Result<Answers, CaptureError> {
    let mut roles: HashSet<(u32, String)> = HashSet::new();
    // (table, identity) -> positions in `work` of the rows to check.
    let mut groups: HashMap<(u32, Arc<Identity>), Vec<usize>> = HashMap::new();
    for (position, item) in work.iter().enumerate() {
        for target in &item.targets {
            roles.insert((item.relation, target.identity.role.clone()));
            if item.needs_rls {
                let rows = groups
                    .entry((item.relation, Arc::clone(&target.identity)))
                    .or_default();
                if rows.last() != Some(&position) {
                    rows.push(position);
                }
            }
        }
    }
    let table_of = |relation: u32| -> &TableInfo {
        tables[&relation]
            .as_deref()
            .expect("work only holds changes of known tables")
    };
    let names: HashMap<u32, (&str, &str)> = work
        .iter()
        .map(|item| {
            let rendered = &item.rendered;
            (item.relation, (rendered.schema(), rendered.table()))
        })
        .collect();

    let selectable_queries = roles.into_iter().map(|(relation, role)| {
        let (schema, table) = names[&relation];
        let remembered = cache.selectable(relation, &role);
        async move {
            if let Some(columns) = remembered {
                return Ok(((relation, role), columns));
            }
            let columns = match catalog.selectable_columns(schema, table, &role).await {
                Ok(columns) => Arc::new(columns),
                // A role or table dropped since: nothing is selectable, so its subscribers
                // get the payload Supabase sends a role that may not see the key.
                Err(err) if err.is_refusal() => Arc::new(HashSet::new()),
                Err(err) => return Err(err),
            };
            Ok::<_, CatalogError>(((relation, role), columns))
        }
    });
    // Every group's rows in one call: the database asks them together (one round trip
    // per pooled connection, not one per group).
    let groups: Vec<_> = groups.into_iter().collect();
    let keys: Vec<Vec<Vec<Option<String>>>> = groups
        .iter()
        .map(|(_, rows)| {
            rows.iter()
                .map(|&position| {
                    work[position]
                        .rendered
                        .primary_key_text()
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let questions: Vec<GroupQuestion<'_>> = groups
        .iter()
        .zip(&keys)
        .map(|(((relation, identity), _), keys)| {
            let (schema, table) = names[relation];
            GroupQuestion {
                schema,
                table,
                key: &table_of(*relation).primary_key,
                role: &identity.role,
                claims: &identity.claims,
                rows: keys,
            }
        })
        .collect();
    let visibility = async {
        if questions.is_empty() {
            return Ok(Vec::new());
        }
        catalog.visible_rows_by_group(&questions).await
    };
    let (selectable, answers) =
        futures_util::future::try_join(try_join_all(selectable_queries), visibility).await?;
    let mut visible = HashMap::with_capacity(groups.len());
    for (((relation, identity), rows), answer) in groups.into_iter().zip(answers) {
        let answer = match answer {
            Ok(answer) => answer,
            // The database refused this group's query (a policy that fails on these
            // claims, a role dropped since): it may see nothing. Anything else (the
            // connection) fails the batch so that it comes again.
            Err(err) if err.is_refusal() => {
                let (_, table) = names[&relation];
                tracing::warn!(role = %identity.role, %table, error = %err, "row level security check refused; not delivering");
                vec![false; rows.len()]
            }
            Err(err) => return Err(err.into()),
        };
        let answers: HashMap<usize, bool> = rows.into_iter().zip(answer).collect();
        visible.insert((relation, identity), answers);
    }
    Ok(Answers {
        selectable: selectable.into_iter().collect(),
        visible,
    })
}

/// Queues the authorized deliveries of the changes from `from` on, in commit order,
/// stopping after the first change that leaves subscribers over their room mark. Returns
/// where to go on from, and those subscribers.
fn queue(
    feed: &Feed,
    work: &[Work],
    answers: &Answers,
    from: usize,
) -> (usize, Vec<Arc<ConnHandle>>) {
    let max_record_bytes = feed.config.max_record_bytes;
    let empty = Arc::new(HashSet::new());
    let mut lagging: HashMap<u64, Arc<ConnHandle>> = HashMap::new();
    for (position, item) in work.iter().enumerate().skip(from) {
        // One `data` per (role, selection), one frame per (topic, ids, role, selection).
        let mut data_by_role: HashMap<(&str, Columns<'_>), String> = HashMap::new();
        let mut frames: HashMap<(&str, &[u32], &str, Columns<'_>), Outgoing> = HashMap::new();
        for target in &item.targets {
            if item.needs_rls {
                let visible = answers
                    .visible
                    .get(&(item.relation, Arc::clone(&target.identity)))
                    .and_then(|rows| rows.get(&position))
                    .copied()
                    .unwrap_or(false);
                if !visible {
                    continue;
                }
            }
            let role = target.identity.role.as_str();
            let select = target.select.as_deref();
            let data = data_by_role.entry((role, select)).or_insert_with(|| {
                let columns = answers
                    .selectable
                    .get(&(item.relation, role.to_owned()))
                    .unwrap_or(&empty);
                item.rendered
                    .data_for_selection(Some(columns), select, max_record_bytes)
            });
            let subscription = &target.subscription;
            let outgoing = frames
                .entry((&subscription.topic, &target.ids, role, select))
                .or_insert_with(|| {
                    Outgoing::raw(
                        &subscription.topic,
                        POSTGRES_CHANGES,
                        body(&target.ids, data),
                    )
                });
            let Some(frame) = outgoing.frame(&subscription.conn) else {
                continue;
            };
            match subscription.conn.queue.push(Outbound::Frame(frame.clone())) {
                Ok(Pushed::Room) => {
                    feed.metrics.delivered.inc();
                }
                Ok(Pushed::Lagging) => {
                    feed.metrics.delivered.inc();
                    let conn = &subscription.conn;
                    lagging.entry(conn.id).or_insert_with(|| Arc::clone(conn));
                }
                // The socket's own task counts and logs the disconnect.
                Err(PushError::Overflow | PushError::Closed) => {}
            }
        }
        if !lagging.is_empty() {
            return (position + 1, lagging.into_values().collect());
        }
    }
    (work.len(), Vec::new())
}

/// `{"ids":[…],"data":…}` around an already serialized `data`.
fn body(ids: &[u32], data: &str) -> Box<RawValue> {
    let mut text = String::with_capacity(data.len() + 16 + ids.len() * 11);
    text.push_str("{\"ids\":[");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&id.to_string());
    }
    text.push_str("],\"data\":");
    text.push_str(data);
    text.push('}');
    RawValue::from_string(text).expect("ids and a serialized object are valid JSON")
}

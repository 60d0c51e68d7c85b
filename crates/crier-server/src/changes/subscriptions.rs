//! Who wants which row changes: the subscriptions of joined channels, indexed by table.
//!
//! A channel's `postgres_changes` bindings become one [`Subscription`]. The index maps each
//! `(schema, table)` a binding names (either may be `*`) to the subscriptions naming it,
//! so the capture loop finds a change's candidates with three hash lookups whatever the
//! number of subscribers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crier_postgres::filter::Filter;
use crier_postgres::replication::ChangeKind;
use crier_protocol::join::PostgresChangeBinding;
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::outbound::ConnHandle;

/// Identifies one subscription for the life of the node.
pub(crate) type SubscriptionId = u64;

/// The wildcard for a schema or table.
const ANY: &str = "*";

/// Which kinds of change a binding wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventFilter {
    All,
    Only(ChangeKind),
}

impl EventFilter {
    /// `*`, `INSERT`, `UPDATE` or `DELETE` in any case; anything else (or nothing) means
    /// every event, as in Supabase.
    fn parse(event: Option<&str>) -> Self {
        match event.map(str::to_ascii_uppercase).as_deref() {
            Some("INSERT") => EventFilter::Only(ChangeKind::Insert),
            Some("UPDATE") => EventFilter::Only(ChangeKind::Update),
            Some("DELETE") => EventFilter::Only(ChangeKind::Delete),
            _ => EventFilter::All,
        }
    }

    fn admits(self, kind: ChangeKind) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(only) => only == kind,
        }
    }

    /// How Supabase names the event in its error messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EventFilter::All => "*",
            EventFilter::Only(kind) => kind.as_str(),
        }
    }
}

/// One `postgres_changes` binding, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    /// The id the join reply gave it; delivered changes carry the ids they matched.
    pub(crate) id: u32,
    pub(crate) event: EventFilter,
    /// Schema name (`public` when the client sent none) or `*`.
    pub(crate) schema: String,
    /// Table name or `*` (also when the client sent none).
    pub(crate) table: String,
    /// The filter text as sent, for error messages.
    pub(crate) filter_text: Option<String>,
    pub(crate) filter: Option<Filter>,
    /// `select: [...]`: the columns `record` and `old_record` are cut to (with the
    /// primary key); `None` for every column.
    pub(crate) select: Option<Selection>,
}

/// The columns a binding selects, shared by the changes it matches.
pub(crate) type Selection = Arc<BTreeSet<String>>;

/// Supabase's message for a `select` that is not a list.
const SELECT_NOT_A_LIST: &str = "Error parsing `select` params: expected a list of column name strings, e.g. select: [\"col1\", \"col2\"]";
/// Supabase's message for a `select` on a wildcard schema or table.
const SELECT_ON_WILDCARD: &str = "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.";

/// `select` as Supabase reads it: the strings of a list (none: every column); a string
/// is an error; anything else is ignored.
fn parse_select(raw: &Map<String, Value>) -> Result<Option<Selection>, String> {
    match raw.get("select") {
        Some(Value::Array(items)) => {
            let columns: BTreeSet<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            Ok((!columns.is_empty()).then(|| Arc::new(columns)))
        }
        Some(Value::String(_)) => Err(SELECT_NOT_A_LIST.to_owned()),
        _ => Ok(None),
    }
}

impl Binding {
    /// Parses a join's bindings; the error is the `system` message text Supabase sends
    /// for a filter it cannot parse.
    pub(crate) fn parse_all(bindings: &[PostgresChangeBinding]) -> Result<Vec<Binding>, String> {
        bindings.iter().map(Binding::parse).collect()
    }

    fn parse(binding: &PostgresChangeBinding) -> Result<Binding, String> {
        let filter = match binding.filter.as_deref() {
            None => None,
            Some(text) => Some(
                Filter::parse(text)
                    .map_err(|_| crier_postgres::filter::supabase_error_message(text))?,
            ),
        };
        let select = parse_select(&binding.raw)?;
        let parsed = Binding {
            id: binding.id(),
            event: EventFilter::parse(binding.event.as_deref()),
            schema: binding
                .schema
                .clone()
                .unwrap_or_else(|| "public".to_owned()),
            table: binding.table.clone().unwrap_or_else(|| ANY.to_owned()),
            filter_text: binding.filter.clone(),
            filter,
            select,
        };
        if parsed.select.is_some() && !parsed.names_table() {
            return Err(SELECT_ON_WILDCARD.to_owned());
        }
        Ok(parsed)
    }

    fn names_table(&self) -> bool {
        self.table != ANY && self.schema != ANY
    }

    /// Whether a change of `kind` whose filter row is `row` is one this binding wants
    /// (the table already matched through the index).
    fn matches(&self, kind: ChangeKind, row: &Map<String, Value>) -> bool {
        self.event.admits(kind) && self.filter.as_ref().is_none_or(|f| f.matches(row))
    }
}

/// The database identity changes are authorized as: the JWT's role and its claims.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) role: String,
    /// The claims as JSON text, for `request.jwt.claims`.
    pub(crate) claims: String,
}

/// One channel's postgres changes subscription.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) id: SubscriptionId,
    pub(crate) conn: Arc<ConnHandle>,
    /// The full topic (`realtime:room`).
    pub(crate) topic: Arc<str>,
    /// The channel's join_ref, which its `system` messages carry.
    pub(crate) join_ref: Option<String>,
    pub(crate) bindings: Vec<Binding>,
    identity: RwLock<Arc<Identity>>,
    /// Set once the subscription has been checked against the database; changes reach
    /// only active subscriptions.
    active: AtomicBool,
}

impl Subscription {
    pub(crate) fn new(
        id: SubscriptionId,
        conn: Arc<ConnHandle>,
        topic: Arc<str>,
        join_ref: Option<String>,
        bindings: Vec<Binding>,
        identity: Identity,
    ) -> Self {
        Subscription {
            id,
            conn,
            topic,
            join_ref,
            bindings,
            identity: RwLock::new(Arc::new(identity)),
            active: AtomicBool::new(false),
        }
    }

    /// The channel name: the topic without `realtime:`.
    pub(crate) fn channel_name(&self) -> &str {
        self.topic
            .strip_prefix(crier_protocol::events::TOPIC_PREFIX)
            .unwrap_or(&self.topic)
    }

    pub(crate) fn identity(&self) -> Arc<Identity> {
        Arc::clone(&self.identity.read())
    }

    pub(crate) fn set_identity(&self, identity: Identity) {
        *self.identity.write() = Arc::new(identity);
    }

    pub(crate) fn activate(&self) {
        self.active.store(true, Ordering::Release);
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The ids of the bindings a change matches, in binding order without repeats,
    /// grouped by the columns they select: each group is one message (usually there is
    /// one group; bindings of one channel that select differently get a message each).
    pub(crate) fn matching_ids(
        &self,
        schema: &str,
        table: &str,
        kind: ChangeKind,
        row: &Map<String, Value>,
    ) -> Vec<(Option<Selection>, Vec<u32>)> {
        let mut groups: Vec<(Option<Selection>, Vec<u32>)> = Vec::new();
        for binding in &self.bindings {
            let names = (binding.schema == ANY || binding.schema == schema)
                && (binding.table == ANY || binding.table == table);
            if !names || !binding.matches(kind, row) {
                continue;
            }
            match groups
                .iter_mut()
                .find(|(select, _)| *select == binding.select)
            {
                Some((_, ids)) if ids.contains(&binding.id) => {}
                Some((_, ids)) => ids.push(binding.id),
                None => groups.push((binding.select.clone(), vec![binding.id])),
            }
        }
        groups
    }
}

/// Every subscription, indexed by the tables its bindings name.
#[derive(Debug, Default)]
pub(crate) struct Index {
    inner: RwLock<IndexInner>,
}

#[derive(Debug, Default)]
struct IndexInner {
    subscriptions: HashMap<SubscriptionId, Arc<Subscription>>,
    by_table: HashMap<(String, String), Vec<Arc<Subscription>>>,
}

impl Index {
    pub(crate) fn insert(&self, subscription: Arc<Subscription>) {
        let mut inner = self.inner.write();
        for key in table_keys(&subscription) {
            inner
                .by_table
                .entry(key)
                .or_default()
                .push(Arc::clone(&subscription));
        }
        inner.subscriptions.insert(subscription.id, subscription);
    }

    pub(crate) fn remove(&self, id: SubscriptionId) -> Option<Arc<Subscription>> {
        let mut inner = self.inner.write();
        let subscription = inner.subscriptions.remove(&id)?;
        for key in table_keys(&subscription) {
            if let Some(list) = inner.by_table.get_mut(&key) {
                list.retain(|s| s.id != id);
                if list.is_empty() {
                    inner.by_table.remove(&key);
                }
            }
        }
        Some(subscription)
    }

    pub(crate) fn get(&self, id: SubscriptionId) -> Option<Arc<Subscription>> {
        self.inner.read().subscriptions.get(&id).cloned()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().subscriptions.len()
    }

    /// The active subscriptions with a binding that could name `schema.table`.
    pub(crate) fn candidates(&self, schema: &str, table: &str) -> Vec<Arc<Subscription>> {
        let inner = self.inner.read();
        let mut found: Vec<Arc<Subscription>> = Vec::new();
        // A subscription is listed under each key one of its bindings names; it must come
        // once. The set is needed only when more than one key has subscribers.
        let mut seen: HashSet<SubscriptionId> = HashSet::new();
        let keys = [(schema, table), (schema, ANY), (ANY, ANY)];
        let lists: Vec<&Vec<Arc<Subscription>>> = keys
            .iter()
            // Borrowed lookups would need a custom key type; three small Strings per
            // change cost far less than the change's rendering.
            .filter_map(|(s, t)| inner.by_table.get(&((*s).to_owned(), (*t).to_owned())))
            .collect();
        let several = lists.len() > 1;
        for list in lists {
            for subscription in list {
                if subscription.is_active() && (!several || seen.insert(subscription.id)) {
                    found.push(Arc::clone(subscription));
                }
            }
        }
        found
    }
}

/// The index keys of a subscription: `(schema, table)` with `*` for wildcards (a `*`
/// schema makes the table a wildcard too, as no table is named across schemas).
fn table_keys(subscription: &Subscription) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for binding in &subscription.bindings {
        let key = if binding.names_table() {
            (binding.schema.clone(), binding.table.clone())
        } else if binding.schema == ANY {
            (ANY.to_owned(), ANY.to_owned())
        } else {
            (binding.schema.clone(), ANY.to_owned())
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use crier_protocol::Vsn;
    use serde_json::json;

    use super::*;

    fn subscription(id: u64, bindings: &[PostgresChangeBinding]) -> Arc<Subscription> {
        let subscription = Subscription::new(
            id,
            ConnHandle::detached(id, Vsn::V2),
            Arc::from("realtime:room"),
            Some("1".into()),
            Binding::parse_all(bindings).unwrap(),
            Identity {
                role: "anon".into(),
                claims: "{}".into(),
            },
        );
        subscription.activate();
        Arc::new(subscription)
    }

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn events_parse_case_insensitively_and_default_to_all() {
        assert_eq!(
            EventFilter::parse(Some("insert")),
            EventFilter::Only(ChangeKind::Insert)
        );
        assert_eq!(EventFilter::parse(Some("Delete")).label(), "DELETE");
        assert_eq!(EventFilter::parse(Some("nonsense")), EventFilter::All);
        assert_eq!(EventFilter::parse(None), EventFilter::All);
    }

    #[test]
    fn a_bad_filter_is_reported_as_supabase_does() {
        let bad = PostgresChangeBinding::new("*", "public", Some("t"), Some("foo=hey"));
        let err = Binding::parse_all(&[bad]).unwrap_err();
        assert!(err.starts_with("Error parsing `filter` params"), "{err}");
    }

    #[test]
    fn candidates_come_from_exact_schema_wide_and_global_bindings() {
        let index = Index::default();
        index.insert(subscription(
            1,
            &[PostgresChangeBinding::new(
                "*",
                "public",
                Some("todos"),
                None,
            )],
        ));
        index.insert(subscription(
            2,
            &[PostgresChangeBinding::new("INSERT", "public", None, None)],
        ));
        index.insert(subscription(
            3,
            &[PostgresChangeBinding::new("*", "*", None, None)],
        ));
        index.insert(subscription(
            4,
            &[PostgresChangeBinding::new(
                "*",
                "other",
                Some("todos"),
                None,
            )],
        ));
        let ids = |schema, table| -> Vec<u64> {
            let mut ids: Vec<u64> = index
                .candidates(schema, table)
                .iter()
                .map(|s| s.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids("public", "todos"), [1, 2, 3]);
        assert_eq!(ids("public", "notes"), [2, 3]);
        assert_eq!(ids("other", "todos"), [3, 4]);
        assert_eq!(index.remove(2).map(|s| s.id), Some(2));
        assert_eq!(ids("public", "notes"), [3]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn inactive_subscriptions_are_not_candidates() {
        let index = Index::default();
        let pending = Subscription::new(
            9,
            ConnHandle::detached(9, Vsn::V2),
            Arc::from("realtime:room"),
            None,
            Binding::parse_all(&[PostgresChangeBinding::new("*", "public", None, None)]).unwrap(),
            Identity {
                role: "anon".into(),
                claims: "{}".into(),
            },
        );
        let pending = Arc::new(pending);
        index.insert(Arc::clone(&pending));
        assert!(index.candidates("public", "t").is_empty());
        pending.activate();
        assert_eq!(index.candidates("public", "t").len(), 1);
    }

    #[test]
    fn matching_ids_apply_event_and_filter_and_skip_repeats() {
        let all = PostgresChangeBinding::new("*", "public", Some("todos"), None);
        let inserts = PostgresChangeBinding::new("INSERT", "public", Some("todos"), None);
        let filtered = PostgresChangeBinding::new("*", "public", Some("todos"), Some("id=eq.1"));
        let sub = subscription(
            1,
            &[all.clone(), inserts.clone(), filtered.clone(), all.clone()],
        );
        let one = row(json!({"id": 1}));
        let two = row(json!({"id": 2}));
        assert_eq!(
            sub.matching_ids("public", "todos", ChangeKind::Insert, &one),
            [(None, vec![all.id(), inserts.id(), filtered.id()])]
        );
        assert_eq!(
            sub.matching_ids("public", "todos", ChangeKind::Update, &two),
            [(None, vec![all.id()])]
        );
        assert!(
            sub.matching_ids("public", "notes", ChangeKind::Update, &one)
                .is_empty()
        );
    }

    fn with_select(event: &str, select: Value) -> PostgresChangeBinding {
        let mut binding = PostgresChangeBinding::new(event, "public", Some("todos"), None);
        binding.raw.insert("select".into(), select);
        binding
    }

    #[test]
    fn bindings_that_select_differently_are_grouped_apart() {
        let plain = PostgresChangeBinding::new("*", "public", Some("todos"), None);
        let title = with_select("*", json!(["title", "done", "title"]));
        let same = with_select("INSERT", json!(["done", "title", 7]));
        let other = with_select("UPDATE", json!(["owner"]));
        let sub = subscription(
            1,
            &[plain.clone(), title.clone(), same.clone(), other.clone()],
        );
        let groups = sub.matching_ids("public", "todos", ChangeKind::Insert, &row(json!({})));
        let selection: BTreeSet<String> = ["done".into(), "title".into()].into();
        assert_eq!(
            groups,
            [
                (None, vec![plain.id()]),
                (Some(Arc::new(selection)), vec![title.id(), same.id()]),
            ]
        );
        // An empty list, or one of no strings, selects everything (as Supabase reads it).
        let parsed =
            Binding::parse_all(&[with_select("*", json!([])), with_select("*", json!([1]))])
                .unwrap();
        assert!(parsed.iter().all(|binding| binding.select.is_none()));
    }

    #[test]
    fn a_select_that_is_not_a_list_or_names_a_wildcard_is_refused_with_supabases_text() {
        let err = Binding::parse_all(&[with_select("*", json!("title"))]).unwrap_err();
        assert_eq!(
            err,
            r#"Error parsing `select` params: expected a list of column name strings, e.g. select: ["col1", "col2"]"#
        );
        let mut wildcard = PostgresChangeBinding::new("*", "public", Some("*"), None);
        wildcard.raw.insert("select".into(), json!(["id"]));
        assert_eq!(
            Binding::parse_all(&[wildcard]).unwrap_err(),
            "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name."
        );
    }
}

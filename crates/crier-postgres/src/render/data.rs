//! The `data` object of one role, assembled from a [`RenderedChange`]'s fragments.

use std::collections::{BTreeSet, HashSet};

use super::json::write_json_string;
use super::{
    ERROR_NO_PRIMARY_KEY, ERROR_PAYLOAD_TOO_LARGE, ERROR_UNAUTHORIZED, Field, RenderedChange,
};
use crate::replication::ChangeKind;

impl RenderedChange {
    /// The serialized `data` object for a subscriber who may select `selectable` columns
    /// (None = all columns), as a JSON string ready to embed.
    ///
    /// `selectable` is what the role may read: the columns for which
    /// `has_column_privilege(role, table, column, 'SELECT')` holds. `max_record_bytes` is
    /// compared with [`RenderedChange::change_bytes`].
    pub fn data_for(
        &self,
        selectable: Option<&HashSet<String>>,
        max_record_bytes: usize,
    ) -> String {
        self.data_for_selection(selectable, None, max_record_bytes)
    }

    /// [`RenderedChange::data_for`] for a subscription that selects columns
    /// (`select:[...]`): a column is included when the role may select it and it is
    /// selected or part of the primary key. `selected` does not affect the errors: a
    /// primary key the role cannot select is still a 401.
    pub fn data_for_selection(
        &self,
        selectable: Option<&HashSet<String>>,
        selected: Option<&BTreeSet<String>>,
        max_record_bytes: usize,
    ) -> String {
        if self.kind != ChangeKind::Delete {
            if !self.is_pk.contains(&true) {
                return self.error_data(ERROR_NO_PRIMARY_KEY);
            }
            if let Some(selectable) = selectable {
                let key_hidden = self
                    .columns
                    .iter()
                    .zip(&self.is_pk)
                    .any(|((name, _), &pk)| pk && !selectable.contains(name));
                if key_hidden {
                    return self.error_data(ERROR_UNAUTHORIZED);
                }
            }
        }
        let included: Vec<bool> = self
            .columns
            .iter()
            .zip(&self.is_pk)
            .map(|((name, _), &pk)| {
                selectable.is_none_or(|s| s.contains(name))
                    && selected.is_none_or(|s| pk || s.contains(name))
            })
            .collect();
        let oversize = self.change_bytes > max_record_bytes;

        let mut out = String::with_capacity(self.data_capacity);
        out.push_str(&self.buf[self.head.clone()]);
        out.push_str(&self.buf[self.timestamp_json.clone()]);
        out.push_str(&self.buf[self.type_json.clone()]);
        out.push_str(",\"columns\":[");
        let mut first = true;
        for (fragment, _) in self
            .column_fragments
            .iter()
            .zip(&included)
            .filter(|(_, included)| **included)
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&self.buf[fragment.clone()]);
        }
        out.push(']');
        let keep = |field: &Field| included[field.column] && (!oversize || field.small);
        if self.record.is_some() {
            out.push_str(",\"record\":");
            self.write_fields(&mut out, &self.record_fields, keep);
        }
        if self.old_record.is_some() {
            // A DELETE is not checked against the policies: on a table with row level
            // security, only the key may be shown.
            let key_only = self.rls_enabled && self.kind == ChangeKind::Delete;
            out.push_str(",\"old_record\":");
            self.write_fields(&mut out, &self.old_fields, |field| {
                keep(field) && (!key_only || self.is_pk[field.column])
            });
        }
        out.push_str(",\"errors\":");
        if oversize {
            out.push('[');
            write_json_string(&mut out, ERROR_PAYLOAD_TOO_LARGE);
            out.push(']');
        } else {
            out.push_str("null");
        }
        out.push('}');
        out
    }

    /// `{...}` of the fields `keep` keeps.
    fn write_fields(&self, out: &mut String, fields: &[Field], keep: impl Fn(&Field) -> bool) {
        out.push('{');
        let mut first = true;
        for field in fields.iter().filter(|field| keep(field)) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&self.buf[field.fragment.clone()]);
        }
        out.push('}');
    }

    /// The row-less `data` of a 400 or 401, as Supabase's poller completes it: no commit
    /// time, no columns, and empty records.
    fn error_data(&self, error: &str) -> String {
        let mut out = String::with_capacity(self.head.len() + 128);
        out.push_str(&self.buf[self.head.clone()]);
        out.push_str("null");
        out.push_str(&self.buf[self.type_json.clone()]);
        out.push_str(",\"columns\":[]");
        if self.record.is_some() {
            out.push_str(",\"record\":{}");
        }
        if self.old_record.is_some() {
            out.push_str(",\"old_record\":{}");
        }
        out.push_str(",\"errors\":[");
        write_json_string(&mut out, error);
        out.push_str("]}");
        out
    }
}

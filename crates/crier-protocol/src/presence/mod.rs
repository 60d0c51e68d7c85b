//! Presence state and diff maths, as pure data.
//!
//! A topic's presence is a map from key to a list of *metas*: one meta per channel that
//! tracks under that key (the same user on two tabs is one key with two metas). Every
//! change produces a [`PresenceDiff`] of joins and leaves, which is exactly the body of a
//! `presence_diff` message; the whole map is the body of `presence_state`.
//!
//! An update (tracking a changed payload) is a leave of the old meta plus a join of the
//! new one, and the new meta carries `phx_ref_prev` pointing at the old `phx_ref`, so
//! clients can tell an update from a real leave and join.

mod view;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

pub use view::{PresenceChange, PresenceView};

/// Keys the server owns inside a meta; a client payload cannot set them.
const RESERVED_KEYS: [&str; 2] = ["phx_ref", "phx_ref_prev"];

/// One tracked presence: the client's payload plus the server's refs.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceMeta {
    /// Unique reference of this meta.
    pub phx_ref: String,
    /// The `phx_ref` this meta replaced, when it came from an update.
    pub phx_ref_prev: Option<String>,
    /// The tracked payload.
    pub payload: Map<String, Value>,
}

impl Serialize for PresenceMeta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extra = 1 + usize::from(self.phx_ref_prev.is_some());
        let mut map = serializer.serialize_map(Some(self.payload.len() + extra))?;
        for (key, value) in &self.payload {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("phx_ref", &self.phx_ref)?;
        if let Some(prev) = &self.phx_ref_prev {
            map.serialize_entry("phx_ref_prev", prev)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PresenceMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut payload = Map::deserialize(deserializer)?;
        let Some(Value::String(phx_ref)) = payload.remove("phx_ref") else {
            return Err(D::Error::custom("a presence meta needs a string `phx_ref`"));
        };
        let phx_ref_prev = match payload.remove("phx_ref_prev") {
            Some(Value::String(r)) => Some(r),
            _ => None,
        };
        Ok(PresenceMeta {
            phx_ref,
            phx_ref_prev,
            payload,
        })
    }
}

/// Metas grouped by key, serialized as `{"<key>": {"metas": [...]}}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresenceGroups(pub BTreeMap<String, Vec<PresenceMeta>>);

impl PresenceGroups {
    fn push(&mut self, key: &str, meta: PresenceMeta) {
        self.0.entry(key.to_owned()).or_default().push(meta);
    }

    /// True when no key has a meta.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for PresenceGroups {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Metas<'a>(&'a [PresenceMeta]);
        impl Serialize for Metas<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("metas", self.0)?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, metas) in &self.0 {
            map.serialize_entry(key, &Metas(metas))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PresenceGroups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Metas {
            metas: Vec<PresenceMeta>,
        }
        let groups = BTreeMap::<String, Metas>::deserialize(deserializer)?;
        Ok(PresenceGroups(
            groups
                .into_iter()
                .map(|(key, metas)| (key, metas.metas))
                .collect(),
        ))
    }
}

/// The body of a `presence_diff` message.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PresenceDiff {
    /// Metas that appeared.
    #[serde(default)]
    pub joins: PresenceGroups,
    /// Metas that went away.
    #[serde(default)]
    pub leaves: PresenceGroups,
}

impl PresenceDiff {
    /// Adds `other`'s joins and leaves to this diff (several changes sent as one).
    pub fn absorb(&mut self, other: PresenceDiff) {
        for (into, from) in [
            (&mut self.joins, other.joins),
            (&mut self.leaves, other.leaves),
        ] {
            for (key, metas) in from.0 {
                into.0.entry(key).or_default().extend(metas);
            }
        }
    }

    /// True when the diff has neither joins nor leaves.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

/// The presence of one topic. `O` identifies the tracker (one channel of one socket);
/// each owner holds at most one meta, under one key.
#[derive(Debug, Clone)]
pub struct Presences<O> {
    by_key: BTreeMap<String, Vec<(O, PresenceMeta)>>,
    owners: HashMap<O, String>,
}

impl<O> Default for Presences<O> {
    fn default() -> Self {
        Presences {
            by_key: BTreeMap::new(),
            owners: HashMap::new(),
        }
    }
}

impl<O: Copy + Eq + Hash> Presences<O> {
    /// An empty presence map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks `payload` for `owner` under `key`.
    ///
    /// Returns `None` when nothing changed (the same payload tracked again). A new owner
    /// is a join; a changed payload is an update (leave + join with `phx_ref_prev`); a
    /// different key for the same owner is a leave of the old key and a join of the new.
    /// `new_ref` is called only when a new meta is created.
    pub fn track(
        &mut self,
        owner: O,
        key: &str,
        mut payload: Map<String, Value>,
        new_ref: impl FnOnce() -> String,
    ) -> Option<PresenceDiff> {
        for reserved in RESERVED_KEYS {
            payload.remove(reserved);
        }
        let mut diff = PresenceDiff::default();
        let mut phx_ref_prev = None;
        if let Some(old_key) = self.owners.get(&owner).cloned() {
            if old_key == key {
                let current = self
                    .meta_mut(owner, key)
                    .expect("owner index points at a meta");
                if current.payload == payload {
                    return None;
                }
                phx_ref_prev = Some(current.phx_ref.clone());
            }
            if let Some(old) = self.remove(owner) {
                diff.leaves.push(&old_key, old);
            }
        }
        let meta = PresenceMeta {
            phx_ref: new_ref(),
            phx_ref_prev,
            payload,
        };
        diff.joins.push(key, meta.clone());
        self.by_key
            .entry(key.to_owned())
            .or_default()
            .push((owner, meta));
        self.owners.insert(owner, key.to_owned());
        Some(diff)
    }

    /// Removes `owner`'s meta. `None` when it had none.
    pub fn untrack(&mut self, owner: O) -> Option<PresenceDiff> {
        let key = self.owners.get(&owner)?.clone();
        let meta = self.remove(owner)?;
        let mut diff = PresenceDiff::default();
        diff.leaves.push(&key, meta);
        Some(diff)
    }

    /// The meta `owner` tracks, with its key.
    pub fn get(&self, owner: O) -> Option<(&str, &PresenceMeta)> {
        let key = self.owners.get(&owner)?;
        let metas = self.by_key.get(key)?;
        metas
            .iter()
            .find(|(o, _)| *o == owner)
            .map(|(_, meta)| (key.as_str(), meta))
    }

    /// The whole state, the body of `presence_state`.
    pub fn state(&self) -> PresenceGroups {
        PresenceGroups(
            self.by_key
                .iter()
                .map(|(key, metas)| (key.clone(), metas.iter().map(|(_, m)| m.clone()).collect()))
                .collect(),
        )
    }

    /// Every owner that tracks something, in no particular order.
    pub fn owners(&self) -> impl Iterator<Item = O> + '_ {
        self.owners.keys().copied()
    }

    /// Number of metas.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when nobody is tracked.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    fn meta_mut(&mut self, owner: O, key: &str) -> Option<&mut PresenceMeta> {
        self.by_key
            .get_mut(key)?
            .iter_mut()
            .find(|(o, _)| *o == owner)
            .map(|(_, meta)| meta)
    }

    fn remove(&mut self, owner: O) -> Option<PresenceMeta> {
        let key = self.owners.remove(&owner)?;
        let metas = self.by_key.get_mut(&key)?;
        let index = metas.iter().position(|(o, _)| *o == owner)?;
        let (_, meta) = metas.remove(index);
        if metas.is_empty() {
            self.by_key.remove(&key);
        }
        Some(meta)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("test payloads are objects"),
        }
    }

    fn refs() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("r{n}")
        }
    }

    #[test]
    fn track_update_untrack_produce_phoenix_diffs() {
        let mut next = refs();
        let mut presences = Presences::new();

        let join = presences
            .track(1u64, "user-1", payload(json!({"user":"a"})), &mut next)
            .unwrap();
        assert_eq!(
            serde_json::to_value(&join).unwrap(),
            json!({"joins":{"user-1":{"metas":[{"user":"a","phx_ref":"r1"}]}},"leaves":{}})
        );

        assert_eq!(
            presences.track(1, "user-1", payload(json!({"user":"a"})), &mut next),
            None
        );

        let update = presences
            .track(1, "user-1", payload(json!({"user":"b"})), &mut next)
            .unwrap();
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            json!({"joins":{"user-1":{"metas":[{"user":"b","phx_ref":"r2","phx_ref_prev":"r1"}]}},
                   "leaves":{"user-1":{"metas":[{"user":"a","phx_ref":"r1"}]}}})
        );

        let leave = presences.untrack(1).unwrap();
        assert_eq!(
            serde_json::to_value(&leave).unwrap(),
            json!({"joins":{},"leaves":{"user-1":{"metas":[{"user":"b","phx_ref":"r2","phx_ref_prev":"r1"}]}}})
        );
        assert!(presences.is_empty());
        assert_eq!(presences.untrack(1), None);
    }

    #[test]
    fn two_owners_share_a_key() {
        let mut next = refs();
        let mut presences = Presences::new();
        presences.track(1u64, "u", payload(json!({"tab":1})), &mut next);
        presences.track(2u64, "u", payload(json!({"tab":2})), &mut next);
        let state = serde_json::to_value(presences.state()).unwrap();
        assert_eq!(state["u"]["metas"].as_array().unwrap().len(), 2);
        presences.untrack(1);
        let state = serde_json::to_value(presences.state()).unwrap();
        assert_eq!(state, json!({"u":{"metas":[{"tab":2,"phx_ref":"r2"}]}}));
    }

    #[test]
    fn changing_key_leaves_the_old_key() {
        let mut next = refs();
        let mut presences = Presences::new();
        presences.track(1u64, "a", Map::new(), &mut next);
        let diff = presences.track(1u64, "b", Map::new(), &mut next).unwrap();
        assert!(diff.leaves.0.contains_key("a"));
        assert!(diff.joins.0.contains_key("b"));
        assert_eq!(
            diff.joins.0["b"][0].phx_ref_prev, None,
            "a new key is a new presence, not an update"
        );
        assert_eq!(presences.len(), 1);
    }

    #[test]
    fn client_cannot_spoof_refs() {
        let mut presences = Presences::new();
        presences.track(1u64, "a", payload(json!({"phx_ref":"fake","x":1})), || {
            "real".into()
        });
        let (_, meta) = presences.get(1).unwrap();
        assert_eq!(meta.phx_ref, "real");
        assert!(!meta.payload.contains_key("phx_ref"));
    }
}

//! [`SharedHistory`]: one stream per topic that every node of a cluster numbers its
//! broadcasts in, so that a subscriber can resume on any node.
//!
//! Without it each node numbers what its subscribers receive in a stream of its own,
//! and a position means nothing on another node. With it, the bus gives each broadcast
//! its offset, keeps it, and publishes it with that position to every node subscribed
//! to the topic, the publishing node included (which therefore does not deliver first:
//! one order for all nodes needs one place that decides it). Each node keeps a copy of
//! the recent part of each stream it follows (the node's `HistoryStore`), delivers
//! through it, and reads the bus's stream only for what its copy does not reach back to.
//!
//! The bus keeps that copy in step: after it subscribes a topic it says where the
//! stream stands ([`LocalDelivery::continues`]), ordered with the publications, so the
//! node knows that everything after that position will reach it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crier_protocol::UserBroadcast;
use serde_json::value::RawValue;

use super::{BrokerError, Publication};

/// A place in a topic's shared stream, as the bus reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition<'a> {
    /// The stream's current run (opaque; a new one after the stream was lost).
    pub epoch: &'a str,
    /// 1 for the run's first broadcast; 0 before it has any.
    pub offset: u64,
}

/// A publication owned (read back from the bus's stream).
#[derive(Debug, Clone)]
pub enum OwnedPublication {
    /// See [`Publication::Json`].
    Json(Box<RawValue>),
    /// See [`Publication::Binary`].
    Binary(UserBroadcast),
}

impl PartialEq for OwnedPublication {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OwnedPublication::Json(a), OwnedPublication::Json(b)) => a.get() == b.get(),
            (OwnedPublication::Binary(a), OwnedPublication::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl OwnedPublication {
    /// Borrowed, as the broker carries it.
    pub fn publication(&self) -> Publication<'_> {
        match self {
            OwnedPublication::Json(body) => Publication::Json(body),
            OwnedPublication::Binary(broadcast) => Publication::Binary(broadcast),
        }
    }
}

impl From<Publication<'_>> for OwnedPublication {
    fn from(publication: Publication<'_>) -> Self {
        match publication {
            Publication::Json(body) => OwnedPublication::Json(body.to_owned()),
            Publication::Binary(broadcast) => OwnedPublication::Binary(broadcast.clone()),
        }
    }
}

/// One broadcast kept in a shared stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedEntry {
    /// Its offset in the stream's epoch.
    pub offset: u64,
    /// The broadcast.
    pub publication: OwnedPublication,
}

/// What a read of a shared stream found.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedRead {
    /// The stream's epoch (a new one is made when the topic has none yet).
    pub epoch: String,
    /// The offset of its newest broadcast (0: none yet).
    pub latest: u64,
    /// The broadcasts still kept after the offset asked for, oldest first (those past
    /// the count or age bound are gone).
    pub entries: Vec<SharedEntry>,
}

/// A future of the bus.
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Every topic's stream, kept by the bus for all its nodes (see the module doc). The
/// conformance suite `shared_history_conformance!` runs against each implementation.
pub trait SharedHistory: Send + Sync + fmt::Debug {
    /// Gives `publication` the next offset of `topic`'s stream, keeps it, and publishes
    /// it to every node subscribed to `topic`, this one included, through
    /// [`super::LocalDelivery::deliver_at`], in offset order. `exclude` (a connection of
    /// this node: a sender that asked not to receive its own broadcasts) travels with
    /// it. Never waits. Fails when the bus is unreachable now: the node then delivers
    /// to its own subscribers by itself, and the bus signals the gap to the others
    /// once it is back.
    fn append(
        &self,
        topic: &str,
        publication: Publication<'_>,
        exclude: Option<u64>,
    ) -> Result<(), BrokerError>;

    /// The stream of `topic`: its epoch, its latest offset, and up to `limit` kept
    /// broadcasts after offset `after`.
    fn read(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'_, Result<SharedRead, BrokerError>>;
}

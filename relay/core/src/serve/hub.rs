//! Which clients each delivered event goes to. The hub belongs to the thread that delivers
//! events; clients join, subscribe, unsubscribe and leave by [`Control`] messages it applies
//! between events, so routing takes no lock. Each client has a bounded [`Outbox`]: a client whose
//! outbox is full is disconnected and counted, never waited for, so a slow client cannot slow
//! the receiver or the other clients.

use std::collections::HashMap;

use super::Change;

/// What offering an event to a client's outbox did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The outbox is full: the client reads too slowly.
    Full,
    /// The client has gone.
    Gone,
}

/// A client's bounded queue of events.
pub trait Outbox {
    type Item: Clone;
    fn offer(&self, item: Self::Item) -> Offer;
    /// The client is being dropped for reading too slowly (tell it why, then let go).
    fn too_slow(self);
}

/// A change to the hub's clients, from their connections.
pub enum Control<O> {
    Join {
        client: u64,
        outbox: O,
        streams: Vec<String>,
    },
    Change {
        client: u64,
        change: Change,
    },
    Leave {
        client: u64,
    },
}

/// The hub's counts (the summary's `serve` object takes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubCounts {
    pub clients: u64,
    pub events_served: u64,
    pub copies_queued: u64,
    pub events_without_subscriber: u64,
    pub slow_client_disconnects: u64,
}

/// See the module docs.
pub struct Hub<O: Outbox> {
    clients: HashMap<u64, O>,
    /// Stream name -> the clients subscribed to it, in the order they subscribed.
    routes: HashMap<Box<[u8]>, Vec<u64>>,
    counts: HubCounts,
    /// Clients that refused an event during one route (reused: no allocation per event).
    full: Vec<(u64, Offer)>,
}

impl<O: Outbox> Default for Hub<O> {
    fn default() -> Self {
        Hub {
            clients: HashMap::new(),
            routes: HashMap::new(),
            counts: HubCounts::default(),
            full: Vec::new(),
        }
    }
}

impl<O: Outbox> Hub<O> {
    pub fn apply(&mut self, control: Control<O>) {
        match control {
            Control::Join {
                client,
                outbox,
                streams,
            } => {
                self.counts.clients += 1;
                self.clients.insert(client, outbox);
                self.subscribe(client, streams);
            }
            Control::Change {
                client,
                change: Change::Subscribe(streams),
            } => self.subscribe(client, streams),
            Control::Change {
                client,
                change: Change::Unsubscribe(streams),
            } => {
                for stream in streams {
                    if let Some(ids) = self.routes.get_mut(stream.as_bytes()) {
                        ids.retain(|&id| id != client);
                        if ids.is_empty() {
                            self.routes.remove(stream.as_bytes());
                        }
                    }
                }
            }
            Control::Leave { client } => drop(self.drop_client(client)),
        }
    }

    fn subscribe(&mut self, client: u64, streams: Vec<String>) {
        if !self.clients.contains_key(&client) {
            return;
        }
        for stream in streams {
            let ids = self
                .routes
                .entry(stream.into_bytes().into_boxed_slice())
                .or_default();
            if !ids.contains(&client) {
                ids.push(client);
            }
        }
    }

    fn drop_client(&mut self, client: u64) -> Option<O> {
        let outbox = self.clients.remove(&client)?;
        self.routes.retain(|_, ids| {
            ids.retain(|&id| id != client);
            !ids.is_empty()
        });
        Some(outbox)
    }

    /// Offers an event of `stream` to every client subscribed to it; returns how many took it.
    pub fn route(&mut self, stream: &[u8], item: &O::Item) -> usize {
        let Some(ids) = self.routes.get(stream) else {
            self.counts.events_without_subscriber += 1;
            return 0;
        };
        let mut queued = 0;
        for id in ids {
            match self
                .clients
                .get(id)
                .map_or(Offer::Gone, |o| o.offer(item.clone()))
            {
                Offer::Queued => queued += 1,
                refused => self.full.push((*id, refused)),
            }
        }
        let mut full = std::mem::take(&mut self.full);
        for (id, refused) in full.drain(..) {
            let Some(outbox) = self.drop_client(id) else {
                continue;
            };
            // A client that went away by itself is not slow (its Leave follows).
            if refused == Offer::Full {
                self.counts.slow_client_disconnects += 1;
                outbox.too_slow();
            }
        }
        self.full = full;
        self.counts.copies_queued += queued as u64;
        if queued > 0 {
            self.counts.events_served += 1;
        } else {
            self.counts.events_without_subscriber += 1;
        }
        queued
    }

    pub fn counts(&self) -> HubCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests;

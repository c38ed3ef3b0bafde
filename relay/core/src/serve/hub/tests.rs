use std::cell::RefCell;
use std::rc::Rc;

use super::*;

/// An outbox of `room` items that records what it got and whether it was dropped as slow.
#[derive(Clone)]
struct Recorder {
    got: Rc<RefCell<Vec<u32>>>,
    room: usize,
    gone: bool,
    slow: Rc<RefCell<bool>>,
}

fn outbox(room: usize) -> Recorder {
    Recorder {
        got: Rc::default(),
        room,
        gone: false,
        slow: Rc::default(),
    }
}

impl Outbox for Recorder {
    type Item = u32;
    fn offer(&self, item: u32) -> Offer {
        if self.gone {
            return Offer::Gone;
        }
        let mut got = self.got.borrow_mut();
        if got.len() >= self.room {
            return Offer::Full;
        }
        got.push(item);
        Offer::Queued
    }
    fn too_slow(self) {
        *self.slow.borrow_mut() = true;
    }
}

fn join(hub: &mut Hub<Recorder>, client: u64, o: &Recorder, streams: &[&str]) {
    hub.apply(Control::Join {
        client,
        outbox: o.clone(),
        streams: streams.iter().map(|s| s.to_string()).collect(),
    });
}

#[test]
fn events_go_to_the_subscribers_of_their_stream_in_order() {
    let mut hub = Hub::default();
    let (a, b) = (outbox(100), outbox(100));
    join(&mut hub, 1, &a, &["btcusdt@trade"]);
    join(&mut hub, 2, &b, &["btcusdt@trade", "btcusdt@depth"]);
    assert_eq!(hub.route(b"btcusdt@trade", &1), 2);
    assert_eq!(hub.route(b"btcusdt@depth", &2), 1);
    assert_eq!(hub.route(b"ethusdt@trade", &3), 0);
    hub.apply(Control::Change {
        client: 1,
        change: Change::Subscribe(vec!["btcusdt@depth".into()]),
    });
    hub.apply(Control::Change {
        client: 2,
        change: Change::Unsubscribe(vec!["btcusdt@trade".into()]),
    });
    hub.route(b"btcusdt@trade", &4);
    hub.route(b"btcusdt@depth", &5);
    hub.apply(Control::Leave { client: 2 });
    hub.route(b"btcusdt@depth", &6);
    assert_eq!(*a.got.borrow(), [1, 4, 5, 6]);
    assert_eq!(*b.got.borrow(), [1, 2, 5]);
    let c = hub.counts();
    assert_eq!(
        (
            c.clients,
            c.events_served,
            c.copies_queued,
            c.events_without_subscriber
        ),
        (2, 5, 7, 1)
    );
    assert!(
        hub.routes.values().all(|ids| !ids.contains(&2)),
        "nothing left of a client that left"
    );
}

#[test]
fn a_full_client_is_dropped_and_counted_and_the_others_go_on() {
    let mut hub = Hub::default();
    let (slow, fast, gone) = (
        outbox(2),
        outbox(100),
        Recorder {
            gone: true,
            ..outbox(100)
        },
    );
    join(&mut hub, 1, &slow, &["s@trade"]);
    join(&mut hub, 2, &fast, &["s@trade"]);
    join(&mut hub, 3, &gone, &["s@trade"]);
    for i in 0..10 {
        hub.route(b"s@trade", &i);
    }
    assert_eq!(*slow.got.borrow(), [0, 1]);
    assert!(*slow.slow.borrow(), "told why");
    assert!(!*gone.slow.borrow(), "a client that went away is not slow");
    assert_eq!(fast.got.borrow().len(), 10);
    assert_eq!(hub.counts().slow_client_disconnects, 1);
    assert_eq!(hub.clients.len(), 1);
}

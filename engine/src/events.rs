//! The channel from the offices to the registry: events a step produced that another part of
//! the engine acts on (a lapse blacklists its user, I6). Bounded: a registry that falls behind
//! slows the offices' writer threads down instead of letting the queue grow.

use tokio::sync::mpsc;

use crate::pool::Event;

/// Most events waiting for the registry.
pub const EVENTS_QUEUE_MAX: usize = 4_096;

pub type EventSender = mpsc::Sender<(String, Event)>;
pub type EventReceiver = mpsc::Receiver<(String, Event)>;

pub fn channel() -> (EventSender, EventReceiver) {
    mpsc::channel(EVENTS_QUEUE_MAX)
}

/// Hands one office's event to the registry. Only lapses go (the registry acts on nothing
/// else). From a thread outside the runtime (the writer threads, where events are sent once
/// their records are durable) a full queue waits; inside it (never expected) the event is
/// logged and dropped: the blacklist is derived from lapsed applications again at start-up.
pub fn forward(sink: &EventSender, office: &str, event: Event) {
    if !matches!(event, Event::Lapsed { .. }) {
        return;
    }
    match sink.try_send((office.to_string(), event)) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(item)) => {
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = sink.blocking_send(item);
            } else {
                tracing::error!(office, "event queue full: a lapse waits for the next start");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_makes_the_writer_wait_and_only_lapses_go() {
        let (tx, mut rx) = channel();
        let lapse = |app| Event::Lapsed {
            app,
            user: "u".into(),
            until_ms: 1,
        };
        for app in 0..EVENTS_QUEUE_MAX as u64 {
            forward(&tx, "o", lapse(app));
        }
        forward(
            &tx,
            "o",
            Event::Claimed {
                app: 1,
                phone: "1".into(),
                serial: crate::plate::Serial::from_code(0, 5).expect("a valid serial"),
                register_by_ms: 1,
            },
        );
        // The queue is full: the next lapse waits (on this thread, outside a runtime) until
        // the registry takes one.
        let sender = std::thread::spawn({
            let tx = tx.clone();
            move || forward(&tx, "o", lapse(u64::MAX))
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!sender.is_finished(), "the writer waits for room");
        let first = rx.blocking_recv().expect("event");
        assert!(matches!(first.1, Event::Lapsed { app: 0, .. }));
        sender.join().expect("sent");
        let mut rest = 0;
        while let Ok((_, e)) = rx.try_recv() {
            assert!(matches!(e, Event::Lapsed { .. }), "no claim event queued");
            rest += 1;
        }
        assert_eq!(rest, EVENTS_QUEUE_MAX);
    }
}

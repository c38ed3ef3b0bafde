//! placeholder: filled by the event-time work

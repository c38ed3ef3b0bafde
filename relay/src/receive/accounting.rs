//! placeholder: filled by the accounting work

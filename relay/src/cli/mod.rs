//! The command-line front ends: each subcommand's flags, the seed's JSON config files, and their
//! merging into the settings the commands run with (flags override config keys). Nothing here
//! runs anything.

pub mod analyse;
pub mod config;
pub mod forward;
pub mod probe;
pub mod receive;

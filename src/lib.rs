//! The `shop` package as a library: [`app`] starts the roles (the binary's `serve` and the
//! end-to-end tests, in process on port 0), [`cli`] holds each subcommand, [`config`] the
//! validated configuration. `src/main.rs` only parses the command line and runs it.

pub mod app;
pub mod cli;
pub mod config;

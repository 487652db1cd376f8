//! `shop`: one binary, a subcommand per role and per operation (`shop::cli::Shop`).

use clap::Parser;

/// mimalloc rather than the system allocator: JSON payloads and events are many small
/// allocations, and glibc's malloc/free showed up at the top of the rebuild's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shop::cli::init_tracing();
    let outcome = shop::cli::Shop::parse().run().await;
    // off the async runtime: the exporter's blocking client must not run on its threads
    let _ = tokio::task::spawn_blocking(shop::cli::telemetry::flush_traces).await;
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

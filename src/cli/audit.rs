//! `shop audit verify`: recomputes every stream's hash chain and names the first broken link.

use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;

use crate::config::StoreConfig;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every hash chain; exit 1 naming the first broken link.
    Verify {
        #[command(flatten)]
        stores: StoreConfig,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { stores } => verify(&stores).await,
    }
}

async fn verify(stores: &StoreConfig) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let total = eventlog::audit::count_events(&pool).await?;
    let bar = super::progress_bar(total, "verifying");
    let started = Instant::now();
    let report = eventlog::audit::verify_all(&pool, |done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "verified {} events in {} streams in {seconds:.2} s ({:.0} events/s)",
        report.events,
        report.streams,
        report.events as f64 / seconds.max(1e-9)
    );
    match report.first_broken {
        None => {
            println!("every hash chain is intact");
            Ok(ExitCode::SUCCESS)
        }
        Some(link) => {
            println!(
                "BROKEN: {} broken link(s); first: {link}",
                report.broken_links
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

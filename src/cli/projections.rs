//! `shop rebuild <projection>|--all` (blue/green, with a progress bar and events/s) and
//! `shop projections status` (position, lag in events and seconds, state of each projection).

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use projections::pg::{self, PgProjection};

use crate::config::StoreConfig;

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Where each projection stands.
    Status {
        #[command(flatten)]
        stores: StoreConfig,
    },
}

pub async fn run(command: ProjectionsCommand) -> anyhow::Result<ExitCode> {
    let ProjectionsCommand::Status { stores } = command;
    let pool = super::connect(&stores).await?;
    println!(
        "{:<10} {:>20} {:>12} {:>12}  state",
        "projection", "position", "lag events", "lag seconds"
    );
    for projection in pg::all() {
        let status = pg::status(&pool, projection.as_ref()).await?;
        println!(
            "{:<10} {:>20} {:>12} {:>12.1}  {}",
            status.name, status.position, status.lag_events, status.lag_seconds, status.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Rebuilds one projection, or all, into a new version and swaps it in.
pub async fn rebuild(
    stores: &StoreConfig,
    name: Option<&str>,
    all: bool,
    batch: i64,
) -> anyhow::Result<ExitCode> {
    let targets: Vec<Box<dyn PgProjection>> = match (name, all) {
        (_, true) => pg::all(),
        (Some(name), false) => vec![pg::by_name(name).ok_or_else(|| {
            let known: Vec<&str> = pg::all().iter().map(|p| p.name()).collect();
            anyhow!("no projection `{name}`; known: {}", known.join(", "))
        })?],
        (None, false) => return Err(anyhow!("name a projection or pass --all")),
    };
    let pool = super::connect(stores).await?;
    let total = eventlog::audit::count_events(&pool).await?;
    let mut events = 0;
    let mut seconds = 0.0;
    for projection in targets {
        let bar = super::progress_bar(total, &format!("rebuilding {}", projection.name()));
        let done = pg::rebuild(&pool, projection.as_ref(), batch, |p| {
            bar.set_position(p.events)
        })
        .await?;
        bar.finish_and_clear();
        println!(
            "rebuilt {}: {} events in {:.2} s = {:.0} events/s (reading the log {:.2} s, writing the model {:.2} s); swapped in at {}",
            projection.name(),
            done.events,
            done.seconds,
            done.events as f64 / done.seconds.max(1e-9),
            done.read_seconds,
            done.write_seconds,
            done.position
        );
        events += done.events;
        seconds += done.seconds;
    }
    if events > 0 {
        println!(
            "all: {events} events applied in {seconds:.2} s = {:.0} events/s",
            events as f64 / seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

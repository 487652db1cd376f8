//! `shop saga parked` and `shop saga resume`: the staff's side of bounded retries. Saga work
//! (a checkout's drive, a reservation's expiry) whose steps kept failing is parked with its last
//! error; once the cause is fixed, resuming puts it back on the schedule, due now.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::StoreConfig;

#[derive(Subcommand, Debug)]
pub enum SagaCommand {
    /// List parked saga work, oldest first, with the last error.
    Parked {
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Put parked work back on the schedule (e.g. `checkout <order id>`).
    Resume {
        #[command(flatten)]
        stores: StoreConfig,
        /// The timer kind: `checkout` or `reservation-expiry`.
        kind: String,
        /// The timer key: the order id, or `<sku>/<order id>`.
        key: String,
    },
}

pub async fn run(command: SagaCommand) -> anyhow::Result<ExitCode> {
    match command {
        SagaCommand::Parked { stores } => {
            let pool = super::connect(&stores).await?;
            let parked = sagas::timers::parked(&pool).await?;
            for work in &parked {
                println!(
                    "{}\t{}\tparked {}\tafter {} attempts\t{}",
                    work.kind,
                    work.key,
                    work.parked_at.to_rfc3339(),
                    work.attempts,
                    work.reason
                );
            }
            println!("{} parked", parked.len());
            Ok(ExitCode::SUCCESS)
        }
        SagaCommand::Resume { stores, kind, key } => {
            let pool = super::connect(&stores).await?;
            if sagas::timers::resume(&pool, &kind, &key).await? {
                println!("resumed {kind} {key}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("nothing parked as {kind} {key}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

//! `shop customer`: a customer's personal data, for staff: `export` prints everything the shop
//! holds about them as JSON, `erase` destroys it (their data key, account and e-mails; see
//! `command_api::privacy`), `new-master-key` prints a fresh SHOP_DATA_KEY_MASTER.

use std::process::ExitCode;

use clap::Subcommand;
use uuid::Uuid;

use crate::config::{DataKeyConfig, StoreConfig};

#[derive(Subcommand, Debug)]
pub enum CustomerCommand {
    /// Erase a customer's personal data: their data key (the addresses sealed in their events
    /// can never be read again; the events and their hash chains stay), their account and the
    /// e-mails queued or sent to them. Idempotent.
    Erase {
        #[command(flatten)]
        stores: StoreConfig,
        #[command(flatten)]
        keys: DataKeyConfig,
        /// The customer's id (their account id).
        customer: Uuid,
    },
    /// Print everything the shop holds about a customer as JSON (profile, addresses, orders).
    Export {
        #[command(flatten)]
        stores: StoreConfig,
        #[command(flatten)]
        keys: DataKeyConfig,
        customer: Uuid,
    },
    /// Print a new random master key for SHOP_DATA_KEY_MASTER (64 hex digits).
    NewMasterKey,
}

pub async fn run(command: CustomerCommand) -> anyhow::Result<ExitCode> {
    match command {
        CustomerCommand::Erase {
            stores,
            keys,
            customer,
        } => {
            let pool = super::connect(&stores).await?;
            let keyring = keys.required(&pool, "shop customer erase").await?;
            let report =
                command_api::privacy::erase(&pool, Some(keyring.as_ref()), customer).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.plaintext_events_kept > 0 {
                eprintln!(
                    "{} events of this customer were stored in plaintext before personal data \
                     was sealed: they stay in the log (the hash chain covers them) and are \
                     redacted on every read",
                    report.plaintext_events_kept
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CustomerCommand::Export {
            stores,
            keys,
            customer,
        } => {
            let pool = super::connect(&stores).await?;
            let stores = match keys.keyring(&pool).await? {
                Some(keyring) => schemas::stores::Stores::sealed(&pool, keyring),
                None => schemas::stores::Stores::new(&pool),
            };
            let export = command_api::privacy::export(&pool, &stores, customer).await?;
            println!("{}", serde_json::to_string_pretty(&export)?);
            Ok(ExitCode::SUCCESS)
        }
        CustomerCommand::NewMasterKey => {
            let (_, hex) = schemas::personal::MasterKey::generate()?;
            println!("{hex}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

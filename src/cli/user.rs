//! `shop user add`: creates a staff, auditor or customer account. The password comes from
//! `SHOP_USER_PASSWORD` or one line on standard input, never from a flag (flags show in `ps`).

use std::io::BufRead;
use std::process::ExitCode;

use accounts::{passwords, AccountError, Role};
use anyhow::{anyhow, bail};
use clap::Subcommand;
use domain::Email;

use crate::config::StoreConfig;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account.
    Add {
        #[command(flatten)]
        stores: StoreConfig,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// customer, staff or auditor.
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
    },
}

pub async fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    let UserCommand::Add {
        stores,
        email,
        name,
        role,
    } = command;
    let password = match std::env::var("SHOP_USER_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprintln!("password (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let pool = super::connect(&stores).await?;
    let id = add(&pool, &email, &name, role, password).await?;
    println!("created {} account {email} ({id})", role.as_str());
    Ok(ExitCode::SUCCESS)
}

/// Creates an account; an error names what is wrong.
pub async fn add(
    pool: &sqlx::PgPool,
    email: &str,
    name: &str,
    role: Role,
    password: String,
) -> anyhow::Result<uuid::Uuid> {
    let email = Email::parse(email).map_err(|e| anyhow!("email: {e}"))?;
    passwords::check_policy(&password).map_err(|e| anyhow!("password: {e}"))?;
    let hash = passwords::hash(password).await.map_err(|e| anyhow!(e))?;
    match accounts::create(pool, email.as_str(), name, &hash, role).await {
        Ok(id) => Ok(id),
        Err(AccountError::EmailTaken) => bail!("an account with email {email} exists"),
        Err(AccountError::Database(db)) => Err(db.into()),
    }
}

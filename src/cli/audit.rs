//! `shop audit`: `verify` recomputes every stream's hash chain and names the first broken link,
//! and with `--anchors DIR` checks the newest signed anchor against the database; `anchor`
//! writes a signed anchor of every stream head to a directory (and Kafka), outside the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use eventlog::anchor::{self, Anchor, AnchorKey};
use sqlx::PgPool;

use crate::config::{AnchorKeyConfig, StoreConfig};

/// Kafka topic anchors are published to (header and signature; the heads stay in the file).
pub const ANCHOR_TOPIC: &str = "shop.audit-anchors.v1";

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every hash chain; with `--anchors`, also check the newest anchor there (every
    /// anchored stream head still in the database with its hash). Exit 1 naming the first
    /// problem.
    Verify {
        #[command(flatten)]
        stores: StoreConfig,
        /// Directory of anchor files written by `shop audit anchor` (needs SHOP_AUDIT_ANCHOR_KEY).
        #[arg(long, env = "SHOP_AUDIT_ANCHOR_DIR")]
        anchors: Option<PathBuf>,
        #[command(flatten)]
        key: AnchorKeyConfig,
    },
    /// Write a signed anchor of every stream head (what the log reader can read now) to a
    /// directory, after checking the newest anchor already there against the database.
    Anchor {
        #[command(flatten)]
        stores: StoreConfig,
        /// Directory to write the anchor file to (created if missing).
        #[arg(long, env = "SHOP_AUDIT_ANCHOR_DIR")]
        out: PathBuf,
        #[command(flatten)]
        key: AnchorKeyConfig,
        /// Kafka bootstrap servers: when set, the anchor's signed header is also published to
        /// `shop.audit-anchors.v1`.
        #[arg(long, env = "SHOP_KAFKA_BROKERS")]
        kafka_brokers: Option<String>,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            stores,
            anchors,
            key,
        } => verify(&stores, anchors.as_deref(), &key).await,
        AuditCommand::Anchor {
            stores,
            out,
            key,
            kafka_brokers,
        } => {
            let key = key.required("shop audit anchor")?;
            let pool = super::connect(&stores).await?;
            match anchor_once(&pool, &out, &key, Progress::Bar).await? {
                Anchoring::Written { anchor, path } => {
                    if let Some(brokers) = &kafka_brokers {
                        publish(brokers, &anchor, &path).await?;
                        println!("published to Kafka topic {ANCHOR_TOPIC} at {brokers}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Anchoring::Refused(problem) => {
                    println!("BROKEN: {problem}; no new anchor written");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn verify(
    stores: &StoreConfig,
    anchors: Option<&Path>,
    key: &AnchorKeyConfig,
) -> anyhow::Result<ExitCode> {
    // refuse a missing key before the long part
    let key = match anchors {
        Some(_) => Some(key.required("shop audit verify --anchors")?),
        None => None,
    };
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
    let chains_intact = match &report.first_broken {
        None => {
            println!("every hash chain is intact");
            true
        }
        Some(link) => {
            println!(
                "BROKEN: {} broken link(s); first: {link}",
                report.broken_links
            );
            false
        }
    };
    let anchors_hold = match (anchors, &key) {
        (Some(dir), Some(key)) => {
            let files = anchor::read_dir(dir)?;
            match files.last() {
                None => {
                    println!("BROKEN: no anchor files in {}", dir.display());
                    false
                }
                Some(newest) => {
                    println!(
                        "{} anchor file(s) in {}; checking the newest",
                        files.len(),
                        dir.display()
                    );
                    match check_file(&pool, newest, key, Progress::Bar).await? {
                        Ok(anchor) => {
                            println!(
                                "every anchored stream head is intact (anchor of {}, log position {})",
                                anchor.created_at.to_rfc3339(),
                                anchor.position
                            );
                            true
                        }
                        Err(problem) => {
                            println!("BROKEN: {problem}");
                            false
                        }
                    }
                }
            }
        }
        _ => true,
    };
    Ok(if chains_intact && anchors_hold {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether to draw progress bars (the CLI) or not (`shop serve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Bar,
    Quiet,
}

impl Progress {
    fn bar(self, total: u64, what: &str) -> indicatif::ProgressBar {
        match self {
            Progress::Bar => super::progress_bar(total, what),
            Progress::Quiet => indicatif::ProgressBar::hidden(),
        }
    }

    fn say(self, line: &str) {
        match self {
            Progress::Bar => println!("{line}"),
            Progress::Quiet => tracing::info!("{line}"),
        }
    }
}

/// Checks one anchor file against the database: `Ok(anchor)` when it holds, else the first
/// problem in words (not an anchor, badly signed, a truncated or rewritten stream).
async fn check_file(
    pool: &PgPool,
    path: &Path,
    key: &AnchorKey,
    progress: Progress,
) -> anyhow::Result<Result<Anchor, String>> {
    let name = path.display();
    let anchor = match anchor::read_file(path)?.1 {
        Ok(anchor) => anchor,
        Err(reason) => return Ok(Err(format!("anchor {name}: {reason}"))),
    };
    let bar = progress.bar(anchor.heads.len() as u64, "checking anchored heads");
    let started = Instant::now();
    let report = match anchor::verify(pool, &anchor, key, |done| bar.set_position(done)).await {
        Ok(report) => report,
        Err(anchor::VerifyError::BadlySigned(problem)) => {
            bar.finish_and_clear();
            return Ok(Err(format!("anchor {name} is badly signed: {problem}")));
        }
        Err(anchor::VerifyError::Anchor(error)) => return Err(error.into()),
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    progress.say(&format!(
        "checked {} anchored heads of {name} in {seconds:.2} s ({:.0} heads/s)",
        report.heads_checked,
        report.heads_checked as f64 / seconds.max(1e-9)
    ));
    Ok(match report.first_problem {
        None => Ok(anchor),
        Some(problem) => Err(format!(
            "{} anchor problem(s) against {name}; first: {problem}",
            report.problems
        )),
    })
}

/// What [`anchor_once`] did.
pub enum Anchoring {
    Written {
        anchor: Anchor,
        path: PathBuf,
    },
    /// The newest anchor already in the directory does not hold: a new one would bless the
    /// tampering, so none is written.
    Refused(String),
}

/// Checks the newest anchor in `dir` (if any) against the database, then writes a new one.
pub async fn anchor_once(
    pool: &PgPool,
    dir: &Path,
    key: &AnchorKey,
    progress: Progress,
) -> anyhow::Result<Anchoring> {
    let previous = match dir.exists() {
        true => anchor::read_dir(dir)?.pop(),
        false => None,
    };
    if let Some(previous) = previous {
        if let Err(problem) = check_file(pool, &previous, key, progress).await? {
            return Ok(Anchoring::Refused(problem));
        }
    }
    let bar = progress.bar(0, "anchoring");
    let started = Instant::now();
    let anchor = anchor::create(pool, key, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    let path = anchor::write_file(dir, &anchor)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    progress.say(&format!(
        "anchored {} streams, {} events at log position {} in {seconds:.2} s ({:.0} events/s): {}",
        anchor.streams,
        anchor.events,
        anchor.position,
        anchor.events as f64 / seconds.max(1e-9),
        path.display()
    ));
    Ok(Anchoring::Written { anchor, path })
}

/// Publishes the anchor's signed header (without the heads, which can outgrow a Kafka message)
/// to [`ANCHOR_TOPIC`], keyed by its file name: a second witness of the digest, outside both
/// the database and the directory.
async fn publish(brokers: &str, anchor: &Anchor, path: &Path) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::ClientConfig;
    use std::time::Duration;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    // one partition: anchors keep their order
    let topic = NewTopic::new(ANCHOR_TOPIC, 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()?;
    let header = Anchor {
        heads: Vec::new(),
        ..anchor.clone()
    };
    let payload = serde_json::to_vec(&header)?;
    let key = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| anchor.file_name());
    producer
        .send(
            FutureRecord::to(ANCHOR_TOPIC).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .with_context(|| format!("cannot publish the anchor to {ANCHOR_TOPIC} at {brokers}"))?;
    Ok(())
}

/// `shop serve` with SHOP_AUDIT_ANCHOR_DIR: an anchor at start and every `every` while the log
/// moves, until `stop`. A failure (or a newest anchor that no longer holds) is logged as an error
/// and tried again next time, never fatal.
pub async fn anchor_periodically(
    pool: PgPool,
    dir: PathBuf,
    key: AnchorKey,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut anchored_at = None;
    while !*stop.borrow() {
        let head = eventlog::log::status(&pool)
            .await
            .map(|s| s.safe_head.unwrap_or(eventlog::LogPosition::START));
        match head {
            Ok(head) if Some(head) == anchored_at => {
                tracing::debug!("the log has not moved since the last anchor");
            }
            Ok(_) => match anchor_once(&pool, &dir, &key, Progress::Quiet).await {
                Ok(Anchoring::Written { anchor, .. }) => anchored_at = Some(anchor.position),
                Ok(Anchoring::Refused(problem)) => {
                    tracing::error!(%problem, "audit anchor refused: the newest anchor does not hold")
                }
                Err(error) => tracing::error!(error = format!("{error:#}"), "audit anchor failed"),
            },
            Err(error) => tracing::error!(%error, "audit anchor failed"),
        }
        let _ = tokio::time::timeout(every, stop.wait_for(|stopped| *stopped)).await;
    }
    Ok(())
}

//! Configuration: from flags or the environment (`DATABASE_URL`, `REDIS_URL`, `SHOP_*`), validated
//! once at start with a message that says which setting is wrong and why.

use std::net::SocketAddr;
use std::str::FromStr;

use clap::Args;
use sqlx::postgres::PgConnectOptions;

/// Where the stores are.
#[derive(Args, Debug, Clone)]
pub struct StoreConfig {
    /// PostgreSQL URL of the event store and read models.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/shop",
        value_parser = parse_database_url,
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,

    /// Redis URL of the Redis read models.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = parse_redis_url,
        hide_env_values = true
    )]
    pub redis_url: url::Url,

    /// Largest number of PostgreSQL connections this process opens.
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
}

/// A validated PostgreSQL URL. Its `Debug` hides the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub options: PgConnectOptions,
    shown: String,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    let mut url = url::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme `{}` is not PostgreSQL; expected postgres://USER@HOST:PORT/DATABASE",
            url.scheme()
        ));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err("no database name; expected postgres://USER@HOST:PORT/DATABASE".to_owned());
    }
    let options = PgConnectOptions::from_str(text).map_err(|e| e.to_string())?;
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    Ok(DatabaseUrl {
        options,
        shown: url.to_string(),
    })
}

fn parse_redis_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}); expected redis://HOST:PORT"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "scheme `{}` is not Redis; expected redis://HOST:PORT",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host; expected redis://HOST:PORT".to_owned());
    }
    Ok(url)
}

/// Limits and settings of the command API.
#[derive(Args, Debug, Clone)]
pub struct ApiLimits {
    /// Sign-up, login and refresh attempts per minute, per client IP and per account.
    #[arg(long, env = "SHOP_AUTH_RATE_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_per_minute: u32,
    /// Checkouts per minute per customer (or per client IP for guests).
    #[arg(long, env = "SHOP_CHECKOUT_RATE_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub checkout_rate_per_minute: u32,
    /// Reverse proxies (ingress, load balancer) whose forwarding header names the client: a
    /// comma list of addresses and CIDR networks, e.g. `10.0.0.0/8,192.0.2.7`. Rate limits key
    /// on the right-most forwarded address that is not one of these; without any, on the TCP
    /// peer (and a forwarding header is ignored).
    #[arg(long, env = "SHOP_TRUSTED_PROXIES", value_parser = parse_trusted_proxies)]
    pub trusted_proxies: Option<command_api::client_ip::TrustedProxies>,
    /// The header the trusted proxies append the client's address to: `x-forwarded-for` or
    /// `forwarded` (RFC 7239). Only that one is read: the other could come from the client.
    #[arg(long, env = "SHOP_FORWARDED_HEADER", default_value = "x-forwarded-for",
          value_parser = parse_forwarded_header)]
    pub forwarded_header: command_api::client_ip::ForwardedHeader,
    /// ISO 4217 currency of a cart opened without one, e.g. `USD`; without it, such a cart
    /// takes the currency of its first line.
    #[arg(long, env = "SHOP_DEFAULT_CURRENCY", value_parser = parse_currency)]
    pub default_currency: Option<domain::Currency>,
}

fn parse_currency(text: &str) -> Result<domain::Currency, String> {
    domain::Currency::parse(text).map_err(|e| e.to_string())
}

fn parse_trusted_proxies(text: &str) -> Result<command_api::client_ip::TrustedProxies, String> {
    text.parse()
}

fn parse_forwarded_header(text: &str) -> Result<command_api::client_ip::ForwardedHeader, String> {
    text.parse()
}

impl ApiLimits {
    pub fn api_config(&self) -> command_api::ApiConfig {
        command_api::ApiConfig {
            auth_per_minute: self.auth_rate_per_minute,
            checkout_per_minute: self.checkout_rate_per_minute,
            trusted_proxies: self.trusted_proxies.clone().unwrap_or_default(),
            forwarded_header: self.forwarded_header,
            default_currency: self.default_currency,
            ..command_api::ApiConfig::default()
        }
    }
}

/// Customer e-mail.
#[derive(Args, Debug, Clone)]
pub struct MailConfig {
    /// SMTP server for customer notifications, e.g. `smtp://127.0.0.1:2525` or
    /// `smtps://user:pass@mail.example.com`; without it, no notifications are sent.
    #[arg(long, env = "SHOP_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,
    /// Sender of customer notifications.
    #[arg(
        long,
        env = "SHOP_MAIL_FROM",
        default_value = "shop <orders@shop.local>"
    )]
    pub mail_from: String,
}

/// Secrets of the APIs. Never printed.
#[derive(Args, Debug, Clone)]
pub struct SecretConfig {
    /// Key that signs access tokens (at least 32 bytes). Without it, a random key is used and
    /// tokens do not survive a restart (development only).
    #[arg(long, env = "SHOP_JWT_SECRET", hide_env_values = true, value_parser = parse_jwt_secret)]
    pub jwt_secret: Option<SecretString>,
}

/// A string that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for SecretString {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Self(text.to_owned()))
    }
}

fn parse_jwt_secret(text: &str) -> Result<SecretString, String> {
    if text.len() < 32 {
        return Err("must be at least 32 bytes".to_owned());
    }
    Ok(SecretString(text.to_owned()))
}

impl SecretConfig {
    pub fn jwt_secret(&self) -> accounts::tokens::Secret {
        match &self.jwt_secret {
            Some(secret) => accounts::tokens::Secret::new(secret.0.as_bytes().to_vec())
                .unwrap_or_else(|_| accounts::tokens::Secret::random()),
            None => {
                tracing::warn!(
                    "SHOP_JWT_SECRET is not set: using a random key; tokens will not survive a restart"
                );
                accounts::tokens::Secret::random()
            }
        }
    }
}

/// The payment provider and the checkout's deadlines.
#[derive(Args, Debug, Clone)]
pub struct PaymentConfig {
    /// The payment gateway of the roles that take payments (`serve`, `saga-runner`), which
    /// refuse to start without it: `stripe` (needs SHOP_STRIPE_SECRET_KEY) or `local` (Stripe's
    /// test cards, no network, no real payments: development and tests).
    #[arg(long, env = "SHOP_PAYMENT_GATEWAY", value_enum)]
    pub payment_gateway: Option<GatewayKind>,
    /// Stripe secret key (`sk_...`), for SHOP_PAYMENT_GATEWAY=stripe.
    #[arg(long, env = "SHOP_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,
    /// Base URL of Stripe's API (a local Stripe-format server in tests).
    #[arg(
        long,
        env = "SHOP_STRIPE_API_BASE",
        default_value = "https://api.stripe.com/"
    )]
    pub stripe_api_base: url::Url,
    /// Signing secret of the Stripe webhook endpoint (`whsec_...`); without it, webhooks are refused.
    #[arg(long, env = "SHOP_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,
    /// Seconds a customer has to get a payment authorized before the checkout fails.
    #[arg(long, env = "SHOP_PAYMENT_TIMEOUT_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub payment_timeout_seconds: u64,
    /// How long the local gateway's `pm_card_slow` takes, in milliseconds.
    #[arg(long, env = "SHOP_LOCAL_SLOW_CARD_MS", default_value_t = 2_000)]
    pub local_slow_card_ms: u64,
}

/// Which payment gateway takes the payments.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKind {
    /// The local gateway: Stripe's test cards, no network, no real money.
    Local,
    /// Stripe, with SHOP_STRIPE_SECRET_KEY.
    Stripe,
}

impl PaymentConfig {
    /// The gateway chosen, checked: one must be chosen (a production process must not fall back
    /// to the local gateway because a secret is missing), and Stripe needs its key.
    pub fn gateway_kind(&self) -> anyhow::Result<GatewayKind> {
        match (self.payment_gateway, &self.stripe_secret_key) {
            (None, _) => anyhow::bail!(
                "SHOP_PAYMENT_GATEWAY is not set: choose `stripe` (real payments, needs \
                 SHOP_STRIPE_SECRET_KEY) or `local` (Stripe's test cards, no real payments; \
                 development and tests)"
            ),
            (Some(GatewayKind::Stripe), None) => anyhow::bail!(
                "SHOP_PAYMENT_GATEWAY=stripe needs SHOP_STRIPE_SECRET_KEY (the `sk_...` key)"
            ),
            (Some(GatewayKind::Local), Some(_)) => {
                tracing::warn!(
                    "SHOP_PAYMENT_GATEWAY=local: SHOP_STRIPE_SECRET_KEY is set but not used"
                );
                Ok(GatewayKind::Local)
            }
            (Some(kind), _) => Ok(kind),
        }
    }
}

/// Where the HTTP APIs listen.
#[derive(Args, Debug, Clone)]
pub struct ListenConfig {
    /// Address of the command API (REST).
    #[arg(long, env = "SHOP_COMMAND_API_ADDR", default_value = "127.0.0.1:8080")]
    pub command_api_addr: SocketAddr,
    /// Address of the query API (GraphQL).
    #[arg(long, env = "SHOP_QUERY_API_ADDR", default_value = "127.0.0.1:8081")]
    pub query_api_addr: SocketAddr,
    /// Address of the operations listener (`/health/live`, `/health/ready`, `/metrics`), for
    /// every role including those without an API (saga runner, projector); off when not set.
    #[arg(long, env = "SHOP_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// Seconds in-flight work gets to finish after SIGTERM (keep below the orchestrator's grace
    /// period, 30 s in Kubernetes by default).
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_SECONDS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_grace_seconds: u64,
    /// The query API is not ready while a read model lags more than this many seconds.
    #[arg(long, env = "SHOP_READY_MAX_LAG_SECONDS", default_value_t = 30.0)]
    pub ready_max_lag_seconds: f64,
}

/// Kafka: the relay, and where the projectors read from.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (`host:port,...`). `shop relay` needs them; `shop serve` runs the
    /// relay too when they are set.
    #[arg(long, env = "SHOP_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Partitions of the topics the relay creates.
    #[arg(long, env = "SHOP_KAFKA_PARTITIONS", default_value_t = 6,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,
    /// Where the PostgreSQL projectors and the saga runner read events: `postgres` (the log) or
    /// `kafka` (the relay's topics; a consumer group per projection and one for the saga;
    /// redeliveries are dropped by event id).
    #[arg(long, env = "SHOP_EVENT_SOURCE", default_value = "postgres",
          value_parser = ["postgres", "kafka"])]
    pub event_source: String,
}

/// The GraphQL query API.
#[derive(Args, Debug, Clone)]
pub struct QueryApiArgs {
    /// Directory of this replica's search index; without it the index lives in memory and is
    /// rebuilt from the log at every start.
    #[arg(long, env = "SHOP_SEARCH_DIR")]
    pub search_dir: Option<std::path::PathBuf>,
    /// Directory of the built storefront and console (`scripts/web.sh build` writes
    /// `target/web`): served at `/` and `/console` next to `/graphql`; without it, no front-end.
    #[arg(long, env = "SHOP_WEB_DIR")]
    pub web_dir: Option<std::path::PathBuf>,
    /// Answer introspection queries (on in development; turn off in production).
    #[arg(long, env = "SHOP_GRAPHQL_INTROSPECTION", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub graphql_introspection: bool,
    /// Serve GraphiQL at `GET /graphql`.
    #[arg(long, env = "SHOP_GRAPHIQL", default_value_t = true, action = clap::ArgAction::Set)]
    pub graphiql: bool,
    /// Deepest query accepted.
    #[arg(long, env = "SHOP_GRAPHQL_MAX_DEPTH", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=64))]
    pub graphql_max_depth: u64,
    /// Largest query complexity accepted (a field costs 1; a connection's selection costs
    /// `first` times over).
    #[arg(long, env = "SHOP_GRAPHQL_MAX_COMPLEXITY", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    pub graphql_max_complexity: u64,
    /// Milliseconds a read waits for a read model to reach a requested position.
    #[arg(long, env = "SHOP_CONSISTENCY_WAIT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub consistency_wait_ms: u64,
}

impl QueryApiArgs {
    pub fn query_config(&self) -> query_api::QueryConfig {
        query_api::QueryConfig {
            consistency_wait: std::time::Duration::from_millis(self.consistency_wait_ms),
            max_depth: self.graphql_max_depth as usize,
            max_complexity: self.graphql_max_complexity as usize,
            introspection: self.graphql_introspection,
            graphiql: self.graphiql,
            ..query_api::QueryConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_and_passwords_hidden() {
        let url = parse_database_url("postgres://shop:s3cret@db:5432/shop").unwrap();
        assert_eq!(url.to_string(), "postgres://shop:***@db:5432/shop");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(parse_database_url("mysql://db/shop")
            .unwrap_err()
            .contains("not PostgreSQL"));
        assert!(parse_database_url("postgres://db")
            .unwrap_err()
            .contains("no database name"));
        assert!(parse_database_url("not a url").is_err());
    }

    #[test]
    fn command_api_settings_are_validated_at_start() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            limits: ApiLimits,
        }
        let cli =
            Cli::try_parse_from(["shop", "--trusted-proxies", "10.0.0.0/8, 192.0.2.7"]).unwrap();
        let config = cli.limits.api_config();
        assert!(config
            .trusted_proxies
            .is_trusted("10.1.1.1".parse().unwrap()));
        assert!(!config
            .trusted_proxies
            .is_trusted("11.1.1.1".parse().unwrap()));
        let none = Cli::try_parse_from(["shop"]).unwrap().limits.api_config();
        assert!(none.trusted_proxies.is_empty());
        let error = Cli::try_parse_from(["shop", "--trusted-proxies", "10.0.0.0/40"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("prefix length"), "{error}");
        assert!(Cli::try_parse_from(["shop", "--forwarded-header", "x-real-ip"]).is_err());
        let usd = Cli::try_parse_from(["shop", "--default-currency", "USD"]).unwrap();
        assert_eq!(
            usd.limits
                .api_config()
                .default_currency
                .map(|c| c.to_string()),
            Some("USD".to_owned())
        );
        assert!(none.default_currency.is_none());
        let error = Cli::try_parse_from(["shop", "--default-currency", "dollars"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("--default-currency"), "{error}");
    }

    #[test]
    fn the_payment_gateway_is_chosen_explicitly() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            payments: PaymentConfig,
        }
        let kind = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("shop").chain(args.iter().copied()));
            cli.map_err(|e| e.to_string())
                .and_then(|cli| cli.payments.gateway_kind().map_err(|e| e.to_string()))
        };
        assert!(kind(&[]).unwrap_err().contains("SHOP_PAYMENT_GATEWAY"));
        assert_eq!(
            kind(&["--payment-gateway", "local"]),
            Ok(GatewayKind::Local)
        );
        assert!(kind(&["--payment-gateway", "stripe"])
            .unwrap_err()
            .contains("SHOP_STRIPE_SECRET_KEY"));
        assert_eq!(
            kind(&[
                "--payment-gateway",
                "stripe",
                "--stripe-secret-key",
                "sk_test_123"
            ]),
            Ok(GatewayKind::Stripe)
        );
        assert!(kind(&["--payment-gateway", "paypal"]).is_err());
    }

    #[test]
    fn redis_urls_are_checked() {
        assert!(parse_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_redis_url("http://127.0.0.1")
            .unwrap_err()
            .contains("not Redis"));
    }
}

/// Everything a serving role reads.
#[derive(Args, Debug, Clone)]
pub struct RoleConfig {
    #[command(flatten)]
    pub stores: StoreConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
    #[command(flatten)]
    pub secrets: SecretConfig,
    #[command(flatten)]
    pub payments: PaymentConfig,
    #[command(flatten)]
    pub limits: ApiLimits,
    #[command(flatten)]
    pub mail: MailConfig,
    #[command(flatten)]
    pub query: QueryApiArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub anchors: AnchorSchedule,
    #[command(flatten)]
    pub data_keys: DataKeyConfig,
    #[command(flatten)]
    pub media: MediaConfig,
}

/// Where product images are kept and served from.
#[derive(Args, Debug, Clone)]
pub struct MediaConfig {
    /// Directory of the product images' objects (originals and thumbnails), used unless
    /// `SHOP_MEDIA_S3_BUCKET` is set; created if missing.
    #[arg(long, env = "SHOP_MEDIA_DIR", default_value = "shop-media")]
    pub media_dir: std::path::PathBuf,
    /// Keep the images in this S3 bucket instead of `SHOP_MEDIA_DIR`. Credentials and region
    /// come the way the AWS SDKs take them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, a web identity token, instance metadata).
    #[arg(long, env = "SHOP_MEDIA_S3_BUCKET")]
    pub media_s3_bucket: Option<String>,
    /// The S3 region (else `AWS_REGION`, else `us-east-1`).
    #[arg(long, env = "SHOP_MEDIA_S3_REGION")]
    pub media_s3_region: Option<String>,
    /// An S3-compatible server's URL (MinIO, Ceph); without it, AWS S3.
    #[arg(long, env = "SHOP_MEDIA_S3_ENDPOINT")]
    pub media_s3_endpoint: Option<String>,
    /// Allow a plain `http://` S3 endpoint.
    #[arg(long, env = "SHOP_MEDIA_S3_ALLOW_HTTP", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub media_s3_allow_http: bool,
    /// The prefix of image URLs in GraphQL: `/media` (the query API serves the objects itself)
    /// or e.g. a CDN's or the bucket's URL.
    #[arg(long, env = "SHOP_MEDIA_PUBLIC_URL", default_value = "/media")]
    pub media_public_url: String,
}

impl MediaConfig {
    /// The configured store: S3 when a bucket is given, else the directory.
    pub fn store(&self) -> anyhow::Result<media::ImageStore> {
        let store = match &self.media_s3_bucket {
            Some(bucket) => media::ImageStore::s3(&media::S3Settings {
                bucket: bucket.clone(),
                region: self.media_s3_region.clone(),
                endpoint: self.media_s3_endpoint.clone(),
                access_key_id: None,
                secret_access_key: None,
                allow_http: self.media_s3_allow_http,
            }),
            None => media::ImageStore::local(&self.media_dir),
        };
        store.map_err(|e| anyhow::anyhow!("product images (SHOP_MEDIA_*): {e}"))
    }
}

/// The master key that wraps the data keys of personal data (`schemas::personal`). Never
/// printed.
#[derive(Args, Debug, Clone)]
pub struct DataKeyConfig {
    /// 64 hex digits (32 bytes): the master key that wraps every customer's data key. With it,
    /// personal fields of events (shipping addresses) are stored encrypted and can be erased
    /// (`shop customer erase`); without it they are stored in plaintext. Keep it out of the
    /// database and out of backups of the database; losing it loses every sealed field.
    #[arg(long, env = "SHOP_DATA_KEY_MASTER", hide_env_values = true)]
    pub data_key_master: Option<SecretString>,
}

impl DataKeyConfig {
    /// The keyring of `pool`'s database, or `None` without a master key. A malformed master key
    /// or one that is not the database's is an error (its value is never printed).
    pub async fn keyring(
        &self,
        pool: &sqlx::PgPool,
    ) -> anyhow::Result<Option<std::sync::Arc<schemas::personal::Keyring>>> {
        let Some(master) = &self.data_key_master else {
            return Ok(None);
        };
        let master = schemas::personal::MasterKey::from_hex(&master.0)
            .map_err(|e| anyhow::anyhow!("SHOP_DATA_KEY_MASTER: {e}"))?;
        let keyring = schemas::personal::Keyring::open(pool.clone(), master)
            .await
            .map_err(|e| anyhow::anyhow!("SHOP_DATA_KEY_MASTER: {e}"))?;
        Ok(Some(std::sync::Arc::new(keyring)))
    }

    /// [`DataKeyConfig::keyring`], required by `command`.
    pub async fn required(
        &self,
        pool: &sqlx::PgPool,
        command: &str,
    ) -> anyhow::Result<std::sync::Arc<schemas::personal::Keyring>> {
        self.keyring(pool).await?.ok_or_else(|| {
            anyhow::anyhow!("`{command}` needs SHOP_DATA_KEY_MASTER (the data keys' master key)")
        })
    }
}

/// The key audit anchors are signed with. Never printed.
#[derive(Args, Debug, Clone)]
pub struct AnchorKeyConfig {
    /// HMAC-SHA256 key that signs audit anchors (`shop audit anchor`) and checks them (`shop
    /// audit verify --anchors`); at least 32 bytes. Keep it outside the database's reach.
    #[arg(long, env = "SHOP_AUDIT_ANCHOR_KEY", hide_env_values = true)]
    pub audit_anchor_key: Option<SecretString>,
}

impl AnchorKeyConfig {
    /// The key, or an error naming `command` that needs it. Its length is checked here rather
    /// than by clap, whose message would print the rejected value.
    pub fn required(&self, command: &str) -> anyhow::Result<eventlog::anchor::AnchorKey> {
        match &self.audit_anchor_key {
            Some(key) => eventlog::anchor::AnchorKey::new(key.0.as_bytes())
                .map_err(|e| anyhow::anyhow!("SHOP_AUDIT_ANCHOR_KEY: {e}")),
            None => {
                anyhow::bail!("`{command}` needs SHOP_AUDIT_ANCHOR_KEY (the anchors' signing key)")
            }
        }
    }
}

/// Audit anchors written by `shop serve` on a schedule.
#[derive(Args, Debug, Clone)]
pub struct AnchorSchedule {
    /// Directory `shop serve` writes a signed anchor of every stream head to, every
    /// SHOP_AUDIT_ANCHOR_EVERY_SECONDS (needs SHOP_AUDIT_ANCHOR_KEY); off when not set.
    #[arg(long, env = "SHOP_AUDIT_ANCHOR_DIR")]
    pub audit_anchor_dir: Option<std::path::PathBuf>,
    /// Seconds between two anchors written by `shop serve`.
    #[arg(long, env = "SHOP_AUDIT_ANCHOR_EVERY_SECONDS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub audit_anchor_every_seconds: u64,
    #[command(flatten)]
    pub key: AnchorKeyConfig,
}

impl RoleConfig {
    /// A configuration from command-line flags (`--database-url`, `--command-api-addr`, ...),
    /// the environment and the defaults filling in the rest, as for the binary: how a test
    /// starts roles in process ([`crate::app::start`]).
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: RoleConfig,
        }
        let arguments = std::iter::once(std::ffi::OsString::from("shop"))
            .chain(flags.into_iter().map(Into::into));
        Ok(<Flags as clap::Parser>::try_parse_from(arguments)?.config)
    }
}

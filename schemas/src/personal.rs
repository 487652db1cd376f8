//! Personal data in events, sealed with a key per data subject so that it can be erased
//! (crypto-shredding).
//!
//! Events are immutable and hash-chained, so personal data cannot be deleted from them. Instead,
//! the personal fields of an event ([`PERSONAL_FIELDS`]) are stored encrypted (AES-256-GCM) with
//! a data key of their subject: the customer, or for a guest checkout the order. Data keys live
//! in `data_keys` (migration 500), wrapped by a master key that comes from configuration
//! (`SHOP_DATA_KEY_MASTER`) and never touches the database. Erasing a subject deletes its data
//! key: its ciphertexts stay in the log, so every hash chain and audit anchor still verifies, and
//! they can never be read again.
//!
//! Where what happens:
//! - the event store seals on append and opens on load through [`Keyring`]'s
//!   [`PayloadCodec`] implementation ([`crate::stores::Stores::sealed`]): the domain only ever
//!   sees plaintext (or, once erased, the [`ERASED`] placeholder) and the chain only ciphertext;
//! - [`crate::decode`] and [`crate::decode_ref`], what every read model, the relay's consumers
//!   and the auditor use, never open anything: personal fields come out as [`REDACTED`]. Read
//!   models hold no personal data at all, so erasure needs no read-model surgery and a rebuild
//!   is the same before and after it;
//! - the few readers that need the plaintext (the checkout saga copying the cart's address into
//!   the order, the customer's data export) open it with [`Keyring::decode`].
//!
//! A sealed field keeps what is not personal in clear ([`KEPT_IN_CLEAR`]: the country, which
//! decides VAT and which the VAT records must keep) and replaces the rest with
//! `"sealed": {"subject", "nonce", "ciphertext"}`. Events stored before sealing (plaintext) are
//! left as they are: rewriting them would break the chain. They are redacted on every read once
//! their subject is erased, and `shop customer erase` counts them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use domain::{CustomerId, OrderId};
use eventlog::codec::{CodecError, PayloadCodec};
use eventlog::RecordedEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{AnyEvent, DecodeError};

/// What a read without keys shows in place of a personal field.
pub const REDACTED: &str = "[redacted]";
/// What a read with keys shows in place of a personal field whose subject was erased.
pub const ERASED: &str = "[erased]";

/// Fields of a personal object kept in clear: the country alone names no one, decides the VAT
/// of an order (the saga prices from it) and is part of the VAT records a shop must keep.
pub const KEPT_IN_CLEAR: &[&str] = &["country"];

/// The fields a redacted or erased address shows the placeholder in (`line2` becomes null).
const ADDRESS_TEXT_FIELDS: &[&str] = &["name", "line1", "city", "postal_code"];

/// One personal object in one event type: the path of keys to it in the stored payload.
#[derive(Debug, Clone, Copy)]
pub struct PersonalField {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub path: &'static [&'static str],
}

/// Every personal field of every event: the shipping address (recipient's name, street, city,
/// postal code), wherever it is copied. Accounts (e-mail, name) are not events: they live in
/// `users` and are erased there.
pub const PERSONAL_FIELDS: &[PersonalField] = &[
    PersonalField {
        aggregate_type: "cart",
        event_type: "CartCheckedOut",
        path: &["CartCheckedOut", "shipping_address"],
    },
    PersonalField {
        aggregate_type: "order",
        event_type: "OrderPlaced",
        path: &["OrderPlaced", "shipping_address"],
    },
    PersonalField {
        aggregate_type: "checkout",
        event_type: "CheckoutStarted",
        path: &["CheckoutStarted", "terms", "shipping_address"],
    },
];

fn fields_of<'a>(
    aggregate_type: &'a str,
    event_type: &'a str,
) -> impl Iterator<Item = &'static PersonalField> + 'a {
    PERSONAL_FIELDS
        .iter()
        .filter(move |f| f.aggregate_type == aggregate_type && f.event_type == event_type)
}

/// Whether events of this type carry personal fields.
pub fn carries_personal_data(aggregate_type: &str, event_type: &str) -> bool {
    fields_of(aggregate_type, event_type).next().is_some()
}

fn object_at<'a>(payload: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut value = payload;
    for key in path {
        value = value.get_mut(*key)?;
    }
    value.as_object_mut()
}

/// The personal object `object` with every personal field replaced by `placeholder`.
fn placeholder_object(object: &Map<String, Value>, placeholder: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for key in KEPT_IN_CLEAR {
        if let Some(value) = object.get(*key) {
            out.insert((*key).to_owned(), value.clone());
        }
    }
    for key in ADDRESS_TEXT_FIELDS {
        out.insert((*key).to_owned(), Value::String(placeholder.to_owned()));
    }
    out.insert("line2".to_owned(), Value::Null);
    out
}

/// Replaces every personal field of a stored payload (sealed or plaintext) by `placeholder`.
pub fn redact(aggregate_type: &str, event_type: &str, payload: &mut Value, placeholder: &str) {
    for field in fields_of(aggregate_type, event_type) {
        if let Some(object) = object_at(payload, field.path) {
            *object = placeholder_object(object, placeholder);
        }
    }
}

/// Whose personal data a sealed field is: the key it is sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Customer(CustomerId),
    /// A guest checkout: the cart's check-out, the checkout and the order share the order's key.
    GuestOrder(OrderId),
}

impl Subject {
    /// The subject as stored (`customer:<uuid>`, `order:<uuid>`).
    pub fn name(&self) -> String {
        match self {
            Subject::Customer(id) => format!("customer:{id}"),
            Subject::GuestOrder(id) => format!("order:{id}"),
        }
    }

    fn customer(&self) -> Option<Uuid> {
        match self {
            Subject::Customer(id) => Some(id.0),
            Subject::GuestOrder(_) => None,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why personal data could not be sealed, opened or erased.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("the data-key master key must be 64 hex digits (32 bytes)")]
    InvalidMasterKey,
    #[error(
        "the data-key master key is not the one the data keys were wrapped with \
         (check SHOP_DATA_KEY_MASTER)"
    )]
    WrongMasterKey,
    #[error("a sealed field of {0} cannot be opened: {1}")]
    Corrupt(String, String),
    #[error("{0}: cannot tell whose personal data this is")]
    NoSubject(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<eventlog::Error> for KeyringError {
    fn from(error: eventlog::Error) -> Self {
        match error {
            eventlog::Error::Database(error) => KeyringError::Database(error),
            other => KeyringError::Corrupt("the event log".to_owned(), other.to_string()),
        }
    }
}

impl KeyringError {
    /// Whether a retry later may succeed (the database could not be reached).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KeyringError::Database(e) if eventlog::error::is_unavailable(e))
    }
}

/// The master key that wraps every data key. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyringError> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyringError::InvalidMasterKey)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        if bytes.len() != 32 {
            return Err(KeyringError::InvalidMasterKey);
        }
        Ok(Self(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes))))
    }

    /// A fresh random master key (tests, and `shop customer new-master-key`).
    pub fn generate() -> Result<(Self, String), KeyringError> {
        let bytes = random::<32>()?;
        Ok((Self::from_bytes(&bytes)?, hex::encode(bytes)))
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeyringError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyringError::Random(e.to_string()))?;
    Ok(bytes)
}

/// `nonce || ciphertext` of `plaintext` under `cipher`, bound to `aad`.
fn seal_bytes(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let nonce = random::<12>()?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| KeyringError::Corrupt("a new seal".into(), "encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// The plaintext of [`seal_bytes`]' output; `None` when the key or the `aad` is not the one it
/// was sealed with, or the bytes were changed.
fn open_bytes(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(12);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// What a wrapped data key is bound to, so a wrapped key moved to another subject's row does
/// not open.
fn wrap_aad(subject: &str) -> Vec<u8> {
    format!("shop data key v1|{subject}").into_bytes()
}

const MASTER_CHECK: &[u8] = b"shop data-key master key check v1";

/// A sealed field's envelope, beside the fields kept in clear.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    subject: String,
    /// hex of `nonce || ciphertext` of the personal fields' JSON object
    ciphertext: String,
}

const SEALED: &str = "sealed";

/// How long a live data key is used from memory before it is read again (a key erased by
/// another process stops opening here within this time; an erased key is never read again).
const LIVE_KEY_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 100_000;

#[derive(Clone)]
enum Cached {
    Live(Arc<Aes256Gcm>, Instant),
    Erased,
}

enum KeyState {
    Live(Arc<Aes256Gcm>),
    Erased,
    Missing,
}

/// What [`Keyring::erase`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub subject: String,
    /// Whether a live key was destroyed (false: there was none, or it was erased before).
    pub key_destroyed: bool,
}

/// The data keys: sealing on append, opening on load, erasure.
pub struct Keyring {
    pool: PgPool,
    master: MasterKey,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// The keyring of the database behind `pool`, after checking that `master` is the key its
    /// data keys are wrapped with ([`KeyringError::WrongMasterKey`] otherwise). The first
    /// keyring opened on a database records a check value of its master key.
    pub async fn open(pool: PgPool, master: MasterKey) -> Result<Self, KeyringError> {
        let check = seal_bytes(&master.0, MASTER_CHECK, b"check")?;
        sqlx::query(
            "INSERT INTO data_key_master (id, check_value) VALUES (true, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&check)
        .execute(&pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT check_value FROM data_key_master WHERE id")
                .fetch_one(&pool)
                .await?;
        match open_bytes(&master.0, &stored, b"check") {
            Some(plain) if plain == MASTER_CHECK => Ok(Self {
                pool,
                master,
                cache: Mutex::new(HashMap::new()),
            }),
            _ => Err(KeyringError::WrongMasterKey),
        }
    }

    fn cached(&self, subject: &str) -> Option<KeyState> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(subject)? {
            Cached::Erased => Some(KeyState::Erased),
            Cached::Live(key, at) if at.elapsed() < LIVE_KEY_TTL => {
                Some(KeyState::Live(key.clone()))
            }
            Cached::Live(..) => None,
        }
    }

    fn remember(&self, subject: &str, entry: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(subject.to_owned(), entry);
    }

    async fn state(&self, subject: &str) -> Result<KeyState, KeyringError> {
        if let Some(state) = self.cached(subject) {
            return Ok(state);
        }
        let row = sqlx::query("SELECT wrapped_key FROM data_keys WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(KeyState::Missing);
        };
        match row.get::<Option<Vec<u8>>, _>("wrapped_key") {
            None => {
                self.remember(subject, Cached::Erased);
                Ok(KeyState::Erased)
            }
            Some(wrapped) => {
                let key = open_bytes(&self.master.0, &wrapped, &wrap_aad(subject))
                    .filter(|k| k.len() == 32)
                    .ok_or(KeyringError::WrongMasterKey)?;
                let key = Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)));
                self.remember(subject, Cached::Live(key.clone(), Instant::now()));
                Ok(KeyState::Live(key))
            }
        }
    }

    /// The subject's key, created on first use; `None` once the subject was erased.
    async fn key_for_sealing(
        &self,
        subject: &Subject,
    ) -> Result<Option<Arc<Aes256Gcm>>, KeyringError> {
        let name = subject.name();
        for _ in 0..2 {
            match self.state(&name).await? {
                KeyState::Live(key) => return Ok(Some(key)),
                KeyState::Erased => return Ok(None),
                KeyState::Missing => {
                    let wrapped = seal_bytes(&self.master.0, &random::<32>()?, &wrap_aad(&name))?;
                    // a concurrent first use may win: then its key is the one read next
                    sqlx::query(
                        "INSERT INTO data_keys (subject, customer_id, wrapped_key)
                         VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING",
                    )
                    .bind(&name)
                    .bind(subject.customer())
                    .bind(&wrapped)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Err(KeyringError::Corrupt(
            name,
            "the new data key was not stored".into(),
        ))
    }

    /// Whose personal data an event of this type carries (the cart's owner is read from the
    /// cart's first event: a cart's check-out does not name it).
    async fn subject_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &Value,
    ) -> Result<Subject, KeyringError> {
        let uuid = |value: &Value| value.as_str().and_then(|s| s.parse::<Uuid>().ok());
        let no_subject = || KeyringError::NoSubject(format!("{aggregate_type}/{aggregate_id}"));
        let (customer, order) = match (aggregate_type, event_type) {
            ("order", "OrderPlaced") => (
                uuid(&payload["OrderPlaced"]["customer"]),
                aggregate_id.parse::<Uuid>().ok(),
            ),
            ("checkout", "CheckoutStarted") => {
                let terms = &payload["CheckoutStarted"]["terms"];
                (uuid(&terms["customer"]), uuid(&terms["order_id"]))
            }
            ("cart", "CartCheckedOut") => {
                let created = eventlog::streams::first_event_of_type(
                    &self.pool,
                    "cart",
                    aggregate_id,
                    "CartCreated",
                )
                .await?;
                let owner = created.map(|c| c.payload["CartCreated"]["owner"]["Customer"].clone());
                (
                    owner.as_ref().and_then(uuid),
                    uuid(&payload["CartCheckedOut"]["order_id"]),
                )
            }
            _ => return Err(no_subject()),
        };
        match (customer, order) {
            (Some(customer), _) => Ok(Subject::Customer(CustomerId(customer))),
            (None, Some(order)) => Ok(Subject::GuestOrder(OrderId(order))),
            (None, None) => Err(no_subject()),
        }
    }

    /// Seals the personal fields of one event's domain form, in place. Those of a subject
    /// erased already (a checkout still in flight when its customer was erased) are stored as
    /// [`ERASED`]: nothing of an erased subject is written again.
    pub async fn seal(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), KeyringError> {
        if !carries_personal_data(aggregate_type, event_type) {
            return Ok(());
        }
        let subject = self
            .subject_of(aggregate_type, aggregate_id, event_type, payload)
            .await?;
        let Some(key) = self.key_for_sealing(&subject).await? else {
            redact(aggregate_type, event_type, payload, ERASED);
            return Ok(());
        };
        let name = subject.name();
        for field in fields_of(aggregate_type, event_type) {
            let Some(object) = object_at(payload, field.path) else {
                continue;
            };
            if object.contains_key(SEALED) {
                continue;
            }
            let mut sealed = Map::new();
            let mut personal = Map::new();
            for (field_name, value) in std::mem::take(object) {
                if KEPT_IN_CLEAR.contains(&field_name.as_str()) {
                    sealed.insert(field_name, value);
                } else {
                    personal.insert(field_name, value);
                }
            }
            let plaintext = serde_json::to_vec(&personal)
                .map_err(|e| KeyringError::Corrupt(name.clone(), e.to_string()))?;
            let envelope = Sealed {
                subject: name.clone(),
                ciphertext: hex::encode(seal_bytes(&key, &plaintext, name.as_bytes())?),
            };
            sealed.insert(
                SEALED.to_owned(),
                serde_json::to_value(envelope)
                    .map_err(|e| KeyringError::Corrupt(name.clone(), e.to_string()))?,
            );
            *object = sealed;
        }
        Ok(())
    }

    /// Opens the sealed fields of one stored event, in place: the plaintext, or [`ERASED`] when
    /// the subject's key is gone (not an error). A plaintext field of an event stored before
    /// sealing is left as it is, or redacted once its subject was erased.
    pub async fn unseal(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), KeyringError> {
        if !carries_personal_data(aggregate_type, event_type) {
            return Ok(());
        }
        let mut legacy_subject: Option<Subject> = None;
        for field in fields_of(aggregate_type, event_type) {
            let envelope = match object_at(payload, field.path) {
                None => continue,
                Some(object) => object.get(SEALED).cloned(),
            };
            let opened = match envelope {
                Some(envelope) => self.open_envelope(envelope).await?,
                None => {
                    // an event stored before sealing: shown unless its subject was erased
                    let subject = match legacy_subject {
                        Some(subject) => subject,
                        None => {
                            self.subject_of(aggregate_type, aggregate_id, event_type, payload)
                                .await?
                        }
                    };
                    legacy_subject = Some(subject);
                    match self.state(&subject.name()).await? {
                        KeyState::Erased => None,
                        _ => continue,
                    }
                }
            };
            let Some(object) = object_at(payload, field.path) else {
                continue;
            };
            *object = match opened {
                Some(personal) => {
                    let mut out: Map<String, Value> = object
                        .iter()
                        .filter(|(k, _)| k.as_str() != SEALED)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    out.extend(personal);
                    out
                }
                None => placeholder_object(object, ERASED),
            };
        }
        Ok(())
    }

    /// The personal fields in `envelope`, or `None` when its subject was erased.
    async fn open_envelope(
        &self,
        envelope: Value,
    ) -> Result<Option<Map<String, Value>>, KeyringError> {
        let corrupt = |reason: &str| KeyringError::Corrupt("an event".into(), reason.to_owned());
        let envelope: Sealed =
            serde_json::from_value(envelope).map_err(|e| corrupt(&e.to_string()))?;
        let key = match self.state(&envelope.subject).await? {
            KeyState::Live(key) => key,
            // a key row that is gone altogether was deleted by hand: as good as erased
            KeyState::Erased | KeyState::Missing => return Ok(None),
        };
        let sealed = hex::decode(&envelope.ciphertext).map_err(|_| corrupt("not hex"))?;
        let plaintext =
            open_bytes(&key, &sealed, envelope.subject.as_bytes()).ok_or_else(|| {
                KeyringError::Corrupt(envelope.subject.clone(), "authentication failed".into())
            })?;
        let personal: Map<String, Value> =
            serde_json::from_slice(&plaintext).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Some(personal))
    }

    /// A stored event decoded with its personal fields opened (or [`ERASED`]): for the readers
    /// that need them (the checkout saga, the data export). Read models use [`crate::decode`].
    pub async fn decode(&self, event: &RecordedEvent) -> Result<AnyEvent, KeyringError> {
        let mut payload = event.payload.clone();
        self.unseal(
            &event.aggregate_type,
            &event.aggregate_id,
            &event.event_type,
            &mut payload,
        )
        .await?;
        Ok(crate::decode_plain(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            payload,
        )?)
    }

    /// Destroys the subject's data key: its sealed fields can never be opened again (every
    /// read shows [`ERASED`]), and what is written of it later is stored as [`ERASED`].
    /// Idempotent. Leaves a tombstone row, so a subject erased before it had a key never gets
    /// one. The old row version is vacuumed away at once (backups keep what they hold until
    /// they expire).
    pub async fn erase(&self, subject: &Subject) -> Result<Erasure, KeyringError> {
        let name = subject.name();
        let destroyed: bool = sqlx::query_scalar(
            "WITH before AS (SELECT wrapped_key IS NOT NULL AS live FROM data_keys WHERE subject = $1)
             INSERT INTO data_keys (subject, customer_id, wrapped_key, erased_at)
             VALUES ($1, $2, NULL, now())
             ON CONFLICT (subject) DO UPDATE
                SET wrapped_key = NULL, erased_at = COALESCE(data_keys.erased_at, now())
             RETURNING COALESCE((SELECT live FROM before), false)",
        )
        .bind(&name)
        .bind(subject.customer())
        .fetch_one(&self.pool)
        .await?;
        self.remember(&name, Cached::Erased);
        // the dead row version still holds the wrapped key until vacuumed
        sqlx::raw_sql("VACUUM data_keys")
            .execute(&self.pool)
            .await?;
        Ok(Erasure {
            subject: name,
            key_destroyed: destroyed,
        })
    }

    /// How many events of the subject's customer were stored before sealing, in plaintext
    /// (immutable: they stay, redacted on every read once the subject is erased).
    pub async fn plaintext_events_of(&self, customer: CustomerId) -> Result<i64, KeyringError> {
        let customer = customer.to_string();
        let mut plaintext = 0;
        // the events that carry a customer's address, and where the customer and address are
        let carriers: [(&str, &str, &[&str], &[&str]); 2] = [
            (
                "order",
                "OrderPlaced",
                &["OrderPlaced", "customer"],
                &["OrderPlaced", "shipping_address"],
            ),
            (
                "checkout",
                "CheckoutStarted",
                &["CheckoutStarted", "terms", "customer"],
                &["CheckoutStarted", "terms", "shipping_address"],
            ),
        ];
        for (aggregate_type, event_type, customer_path, address_path) in carriers {
            let events = eventlog::streams::find_by_payload_field(
                &self.pool,
                aggregate_type,
                event_type,
                customer_path,
                &customer,
            )
            .await?;
            plaintext += events
                .iter()
                .filter_map(|event| {
                    address_path
                        .iter()
                        .try_fold(&event.payload, |value, key| value.get(key))
                })
                .filter(|address| address.get("sealed").is_none())
                .count() as i64;
        }
        Ok(plaintext)
    }
}

#[async_trait]
impl PayloadCodec for Keyring {
    async fn encode(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), CodecError> {
        Ok(self
            .seal(aggregate_type, aggregate_id, event_type, payload)
            .await?)
    }

    async fn decode(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), CodecError> {
        Ok(self
            .unseal(aggregate_type, aggregate_id, event_type, payload)
            .await?)
    }
}

/// The tables of the keyring.
pub const MIGRATIONS: &[eventlog::migrate::Migration] = &[eventlog::migrate::Migration {
    version: 500,
    name: "data_keys",
    sql: include_str!("../migrations/0500_data_keys.sql"),
}];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placed() -> Value {
        json!({"OrderPlaced": {"customer": null, "shipping_address": {
            "name": "Jane Roe", "line1": "Main St 1", "line2": "Flat 2", "city": "Berlin",
            "postal_code": "10115", "country": "DE"}}})
    }

    #[test]
    fn redaction_keeps_the_country_and_nothing_else() {
        let mut payload = placed();
        redact("order", "OrderPlaced", &mut payload, REDACTED);
        assert_eq!(
            payload["OrderPlaced"]["shipping_address"],
            json!({"name": "[redacted]", "line1": "[redacted]", "line2": null,
                   "city": "[redacted]", "postal_code": "[redacted]", "country": "DE"})
        );
        assert!(!payload.to_string().contains("Jane"));
    }

    #[test]
    fn events_without_personal_fields_are_left_alone() {
        let mut payload = placed();
        redact("order", "OrderShipped", &mut payload, REDACTED);
        assert_eq!(payload, placed());
        assert!(!carries_personal_data("product", "ProductCreated"));
        assert!(carries_personal_data("checkout", "CheckoutStarted"));
    }

    #[test]
    fn a_seal_opens_only_with_its_key_and_subject() {
        let (key, _) = MasterKey::generate().unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let sealed = seal_bytes(&key.0, b"Jane", b"customer:1").unwrap();
        assert_eq!(
            open_bytes(&key.0, &sealed, b"customer:1").as_deref(),
            Some(&b"Jane"[..])
        );
        assert_eq!(open_bytes(&key.0, &sealed, b"customer:2"), None);
        assert_eq!(open_bytes(&other.0, &sealed, b"customer:1"), None);
        assert_eq!(open_bytes(&key.0, &sealed[..5], b"customer:1"), None);
    }

    #[test]
    fn a_master_key_is_32_bytes_of_hex() {
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(matches!(
            MasterKey::from_hex(&"ab".repeat(16)),
            Err(KeyringError::InvalidMasterKey)
        ));
        assert!(matches!(
            MasterKey::from_hex("not hex"),
            Err(KeyringError::InvalidMasterKey)
        ));
        assert_eq!(
            format!("{:?}", MasterKey::generate().unwrap().0),
            "MasterKey(..)"
        );
    }
}

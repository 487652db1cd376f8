//! The reviews read model (`rm_reviews`): one row per review (rating, title, text, the
//! verified-purchase badge, helpful votes, whether staff hid it) and one rating summary per
//! product (count, total and the 1-5 star histogram of its *visible* reviews).
//!
//! The summary is kept as deltas: every batch reads the rows of the reviews it touches once,
//! folds its events into them in memory, and adds to each product's summary what its reviews
//! counted after the batch minus what they counted before — so an edit moves a review from one
//! star to another, a hide takes it out and a publish puts it back. Every product a review of
//! the batch belongs to gets its summary row (zeros included), whatever the batch boundaries,
//! so following the log and rebuilding it give the same rows.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::ReviewEvent;
use eventlog::RecordedEvent;
use schemas::AnyEvent;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{decode, PgProjection, ProjectionError, Result};

pub struct Reviews;

#[derive(Clone, Debug)]
struct ReviewRow {
    sku: String,
    author: Uuid,
    rating: i16,
    title: String,
    text: String,
    verified_purchase: bool,
    hidden: bool,
    helpful: i64,
    written_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
}

impl ReviewRow {
    /// What the review adds to its product's summary: its stars while visible.
    fn counted(&self) -> Option<i16> {
        (!self.hidden).then_some(self.rating)
    }
}

/// A change to one product's summary.
#[derive(Clone, Copy, Debug, Default)]
struct SummaryDelta {
    count: i64,
    total: i64,
    stars: [i64; 5],
}

impl SummaryDelta {
    fn add(&mut self, rating: Option<i16>, sign: i64) {
        if let Some(rating) = rating {
            self.count += sign;
            self.total += sign * i64::from(rating);
            if let Some(slot) = usize::try_from(rating - 1)
                .ok()
                .and_then(|i| self.stars.get_mut(i))
            {
                *slot += sign;
            }
        }
    }
}

#[async_trait]
impl PgProjection for Reviews {
    fn name(&self) -> &'static str {
        "reviews"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["review"]
    }

    fn tables(&self, s: &str) -> String {
        format!(
            "CREATE TABLE {s}.reviews (
                review_id         uuid PRIMARY KEY,
                sku               text NOT NULL,
                author            uuid NOT NULL,
                rating            smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
                title             text NOT NULL,
                text              text NOT NULL,
                verified_purchase boolean NOT NULL,
                hidden            boolean NOT NULL,
                helpful           bigint NOT NULL,
                written_at        timestamptz NOT NULL,
                edited_at         timestamptz);
             CREATE TABLE {s}.summaries (
                sku          text PRIMARY KEY,
                review_count bigint NOT NULL,
                rating_total bigint NOT NULL,
                stars_1      bigint NOT NULL,
                stars_2      bigint NOT NULL,
                stars_3      bigint NOT NULL,
                stars_4      bigint NOT NULL,
                stars_5      bigint NOT NULL);"
        )
    }

    fn indexes(&self, s: &str) -> String {
        format!(
            "CREATE INDEX ON {s}.reviews (sku, written_at DESC, review_id);
             CREATE INDEX ON {s}.reviews (sku, helpful DESC, review_id);
             CREATE INDEX ON {s}.reviews (sku, rating DESC, review_id);"
        )
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        s: &str,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let mut decoded = Vec::with_capacity(events.len());
        let mut touched: Vec<Uuid> = Vec::new();
        for event in events.iter().filter(|e| e.aggregate_type == "review") {
            let id = Uuid::parse_str(&event.aggregate_id).map_err(|e| ProjectionError::Event {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                reason: format!("review id: {e}"),
            })?;
            if let AnyEvent::Review(review) = decode(event)? {
                touched.push(id);
                decoded.push((id, review));
            }
        }
        if decoded.is_empty() {
            return Ok(());
        }
        touched.sort_unstable();
        touched.dedup();
        let mut rows: HashMap<Uuid, ReviewRow> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT review_id, sku, author, rating, title, text, verified_purchase, hidden,
                    helpful, written_at, edited_at
               FROM {s}.reviews WHERE review_id = ANY($1)"
        ))
        .bind(&touched)
        .fetch_all(&mut **tx)
        .await?
        {
            rows.insert(
                row.get("review_id"),
                ReviewRow {
                    sku: row.get("sku"),
                    author: row.get("author"),
                    rating: row.get("rating"),
                    title: row.get("title"),
                    text: row.get("text"),
                    verified_purchase: row.get("verified_purchase"),
                    hidden: row.get("hidden"),
                    helpful: row.get("helpful"),
                    written_at: row.get("written_at"),
                    edited_at: row.get("edited_at"),
                },
            );
        }
        // what each touched review counted before the batch (per product)
        let mut summaries: BTreeMap<String, SummaryDelta> = BTreeMap::new();
        for row in rows.values() {
            summaries
                .entry(row.sku.clone())
                .or_default()
                .add(row.counted(), -1);
        }
        for (id, event) in decoded {
            if let ReviewEvent::ReviewWritten {
                author,
                sku,
                rating,
                title,
                text,
                verified_purchase,
                at,
                ..
            } = event
            {
                summaries.entry(sku.to_string()).or_default();
                rows.insert(
                    id,
                    ReviewRow {
                        sku: sku.to_string(),
                        author: author.as_uuid(),
                        rating: i16::from(rating.stars()),
                        title,
                        text,
                        verified_purchase,
                        hidden: false,
                        helpful: 0,
                        written_at: at,
                        edited_at: None,
                    },
                );
                continue;
            }
            let Some(row) = rows.get_mut(&id) else {
                continue; // a change to a review this model never saw written
            };
            match event {
                ReviewEvent::ReviewWritten { .. } => {}
                ReviewEvent::ReviewEdited {
                    rating,
                    title,
                    text,
                    verified_purchase,
                    at,
                } => {
                    row.rating = i16::from(rating.stars());
                    row.title = title;
                    row.text = text;
                    row.verified_purchase = verified_purchase;
                    row.edited_at = Some(at);
                }
                ReviewEvent::ReviewVotedHelpful { .. } => row.helpful += 1,
                ReviewEvent::ReviewHidden { .. } => row.hidden = true,
                ReviewEvent::ReviewPublished { .. } => row.hidden = false,
            }
        }
        // ... and what they count after it
        for row in rows.values() {
            summaries
                .entry(row.sku.clone())
                .or_default()
                .add(row.counted(), 1);
        }

        let ids: Vec<Uuid> = rows.keys().copied().collect();
        let rows: Vec<&ReviewRow> = ids.iter().map(|id| &rows[id]).collect();
        sqlx::query(&format!(
            "INSERT INTO {s}.reviews (review_id, sku, author, rating, title, text,
                                      verified_purchase, hidden, helpful, written_at, edited_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int2[], $5::text[],
                                  $6::text[], $7::bool[], $8::bool[], $9::bigint[],
                                  $10::timestamptz[], $11::timestamptz[])
             ON CONFLICT (review_id) DO UPDATE SET
                rating = EXCLUDED.rating, title = EXCLUDED.title, text = EXCLUDED.text,
                verified_purchase = EXCLUDED.verified_purchase, hidden = EXCLUDED.hidden,
                helpful = EXCLUDED.helpful, edited_at = EXCLUDED.edited_at"
        ))
        .bind(&ids)
        .bind(rows.iter().map(|r| r.sku.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.author).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rating).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.title.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.text.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.verified_purchase).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.hidden).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.helpful).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.written_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.edited_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;

        // in key order: concurrent writers of the same products wait, never deadlock
        let skus: Vec<&String> = summaries.keys().collect();
        let column = |f: fn(&SummaryDelta) -> i64| summaries.values().map(f).collect::<Vec<_>>();
        sqlx::query(&format!(
            "INSERT INTO {s}.summaries AS t (sku, review_count, rating_total,
                                             stars_1, stars_2, stars_3, stars_4, stars_5)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
             ON CONFLICT (sku) DO UPDATE SET
                review_count = t.review_count + EXCLUDED.review_count,
                rating_total = t.rating_total + EXCLUDED.rating_total,
                stars_1 = t.stars_1 + EXCLUDED.stars_1,
                stars_2 = t.stars_2 + EXCLUDED.stars_2,
                stars_3 = t.stars_3 + EXCLUDED.stars_3,
                stars_4 = t.stars_4 + EXCLUDED.stars_4,
                stars_5 = t.stars_5 + EXCLUDED.stars_5"
        ))
        .bind(skus)
        .bind(column(|d| d.count))
        .bind(column(|d| d.total))
        .bind(column(|d| d.stars[0]))
        .bind(column(|d| d.stars[1]))
        .bind(column(|d| d.stars[2]))
        .bind(column(|d| d.stars[3]))
        .bind(column(|d| d.stars[4]))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_moves_a_review_between_stars_and_out_when_hidden() {
        let mut delta = SummaryDelta::default();
        delta.add(Some(4), -1);
        delta.add(Some(2), 1);
        assert_eq!((delta.count, delta.total), (0, -2));
        assert_eq!(delta.stars, [0, 1, 0, -1, 0]);
        let mut hidden = SummaryDelta::default();
        hidden.add(Some(5), -1);
        hidden.add(None, 1);
        assert_eq!((hidden.count, hidden.total), (-1, -5));
        assert_eq!(hidden.stars, [0, 0, 0, 0, -1]);
    }
}

//! The review aggregate: one customer's review of one product (1 to 5 stars, a title and a
//! text), its "helpful" votes and its moderation by staff.
//!
//! The stream id is derived from the customer and the SKU (`derived_ids::review_id_of`), so
//! "one review per customer and product" is this stream's own invariant: a second review is
//! refused (`AlreadyReviewed`), never a second stream. Whether the review carries the
//! verified-purchase badge is a fact the caller proves (a delivered order of that customer with
//! that SKU, read from the order streams) and passes in; the aggregate only records it and never
//! takes a badge away once given.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{CustomerId, ReviewId, Sku};

/// Longest accepted review title, in characters.
pub const TITLE_MAX_LEN: usize = 120;
/// Longest accepted review text, in characters.
pub const TEXT_MAX_LEN: usize = 5_000;
/// Longest accepted moderation reason, in characters.
pub const REASON_MAX_LEN: usize = 500;

/// A star rating: 1 to 5.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u8", into = "u8")]
#[schemars(extend("minimum" = 1, "maximum" = 5))]
pub struct Rating(u8);

impl Rating {
    /// Every rating, lowest first.
    pub const ALL: [Rating; 5] = [Rating(1), Rating(2), Rating(3), Rating(4), Rating(5)];

    pub fn new(stars: i64) -> Result<Rating, ReviewError> {
        match u8::try_from(stars) {
            Ok(stars @ 1..=5) => Ok(Rating(stars)),
            _ => Err(ReviewError::RatingOutOfRange(stars)),
        }
    }

    pub fn stars(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = ReviewError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Rating::new(i64::from(value))
    }
}

impl From<Rating> for u8 {
    fn from(value: Rating) -> Self {
        value.0
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Commands accepted by [`Review`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewCommand {
    Write {
        review_id: ReviewId,
        author: CustomerId,
        sku: Sku,
        rating: Rating,
        title: String,
        text: String,
        /// Proven by the caller: the author has a delivered order with this SKU.
        verified_purchase: bool,
        at: DateTime<Utc>,
    },
    /// The author changes their review.
    Edit {
        author: CustomerId,
        rating: Rating,
        title: String,
        text: String,
        /// Proven again by the caller: a purchase delivered since the review was written earns
        /// the badge; a badge once given stays.
        verified_purchase: bool,
        at: DateTime<Utc>,
    },
    /// Another customer found the review helpful (once per customer).
    VoteHelpful {
        voter: CustomerId,
        at: DateTime<Utc>,
    },
    /// Staff hide the review from customers (it no longer counts in the product's rating).
    Hide { reason: String, at: DateTime<Utc> },
    /// Staff show a hidden review again.
    Publish { reason: String, at: DateTime<Utc> },
}

/// Events of a review stream (wire contract, version "1").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ReviewEvent {
    ReviewWritten {
        review_id: ReviewId,
        author: CustomerId,
        sku: Sku,
        rating: Rating,
        title: String,
        text: String,
        verified_purchase: bool,
        at: DateTime<Utc>,
    },
    ReviewEdited {
        rating: Rating,
        title: String,
        text: String,
        verified_purchase: bool,
        at: DateTime<Utc>,
    },
    ReviewVotedHelpful {
        voter: CustomerId,
        at: DateTime<Utc>,
    },
    ReviewHidden {
        reason: String,
        at: DateTime<Utc>,
    },
    ReviewPublished {
        reason: String,
        at: DateTime<Utc>,
    },
}

/// Every [`ReviewEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "ReviewWritten",
    "ReviewEdited",
    "ReviewVotedHelpful",
    "ReviewHidden",
    "ReviewPublished",
];

impl DomainEvent for ReviewEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReviewWritten { .. } => "ReviewWritten",
            Self::ReviewEdited { .. } => "ReviewEdited",
            Self::ReviewVotedHelpful { .. } => "ReviewVotedHelpful",
            Self::ReviewHidden { .. } => "ReviewHidden",
            Self::ReviewPublished { .. } => "ReviewPublished",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why a review command was rejected. Messages of input errors start with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("review not found")]
    NotFound,
    #[error("this customer has already reviewed this product")]
    AlreadyReviewed,
    #[error("only the author may edit a review")]
    NotAuthor,
    #[error("authors cannot vote for their own review")]
    OwnReview,
    #[error("this customer has already voted for this review")]
    AlreadyVoted,
    #[error("the review is hidden")]
    Hidden,
    #[error("rating: must be 1 to 5 stars, got {0}")]
    RatingOutOfRange(i64),
    #[error("title: must not be empty")]
    EmptyTitle,
    #[error("title: must be at most {max} characters", max = TITLE_MAX_LEN)]
    TitleTooLong,
    #[error("text: must be at most {max} characters", max = TEXT_MAX_LEN)]
    TextTooLong,
    #[error("reason: must not be empty")]
    EmptyReason,
    #[error("reason: must be at most {max} characters", max = REASON_MAX_LEN)]
    ReasonTooLong,
}

/// State of a written review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrittenReview {
    pub review_id: ReviewId,
    pub author: CustomerId,
    pub sku: Sku,
    pub rating: Rating,
    pub title: String,
    pub text: String,
    pub verified_purchase: bool,
    pub hidden: bool,
    pub written_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// Customers who found it helpful.
    pub helpful_voters: BTreeSet<CustomerId>,
}

/// The review aggregate; `None` until written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Review {
    written: Option<WrittenReview>,
}

fn valid_title(title: &str) -> Result<String, ReviewError> {
    let title = title.trim();
    if title.is_empty() {
        Err(ReviewError::EmptyTitle)
    } else if title.chars().count() > TITLE_MAX_LEN {
        Err(ReviewError::TitleTooLong)
    } else {
        Ok(title.to_owned())
    }
}

fn valid_text(text: &str) -> Result<String, ReviewError> {
    let text = text.trim();
    if text.chars().count() > TEXT_MAX_LEN {
        Err(ReviewError::TextTooLong)
    } else {
        Ok(text.to_owned())
    }
}

fn valid_reason(reason: &str) -> Result<String, ReviewError> {
    let reason = reason.trim();
    if reason.is_empty() {
        Err(ReviewError::EmptyReason)
    } else if reason.chars().count() > REASON_MAX_LEN {
        Err(ReviewError::ReasonTooLong)
    } else {
        Ok(reason.to_owned())
    }
}

impl Review {
    pub fn written(&self) -> Option<&WrittenReview> {
        self.written.as_ref()
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: ReviewCommand) -> Result<Vec<ReviewEvent>, ReviewError> {
        use ReviewCommand as C;
        use ReviewEvent as E;

        let Some(review) = &self.written else {
            let C::Write {
                review_id,
                author,
                sku,
                rating,
                title,
                text,
                verified_purchase,
                at,
            } = command
            else {
                return Err(ReviewError::NotFound);
            };
            return Ok(vec![E::ReviewWritten {
                review_id,
                author,
                sku,
                rating,
                title: valid_title(&title)?,
                text: valid_text(&text)?,
                verified_purchase,
                at,
            }]);
        };
        let event = match command {
            C::Write { .. } => return Err(ReviewError::AlreadyReviewed),
            C::Edit {
                author,
                rating,
                title,
                text,
                verified_purchase,
                at,
            } => {
                if author != review.author {
                    return Err(ReviewError::NotAuthor);
                }
                let title = valid_title(&title)?;
                let text = valid_text(&text)?;
                let verified_purchase = review.verified_purchase || verified_purchase;
                let unchanged = rating == review.rating
                    && title == review.title
                    && text == review.text
                    && verified_purchase == review.verified_purchase;
                (!unchanged).then_some(E::ReviewEdited {
                    rating,
                    title,
                    text,
                    verified_purchase,
                    at,
                })
            }
            C::VoteHelpful { voter, at } => {
                if voter == review.author {
                    return Err(ReviewError::OwnReview);
                }
                if review.hidden {
                    return Err(ReviewError::Hidden);
                }
                if review.helpful_voters.contains(&voter) {
                    return Err(ReviewError::AlreadyVoted);
                }
                Some(E::ReviewVotedHelpful { voter, at })
            }
            C::Hide { reason, at } => {
                let reason = valid_reason(&reason)?;
                (!review.hidden).then_some(E::ReviewHidden { reason, at })
            }
            C::Publish { reason, at } => {
                let reason = valid_reason(&reason)?;
                review.hidden.then_some(E::ReviewPublished { reason, at })
            }
        };
        Ok(event.into_iter().collect())
    }
}

impl Aggregate for Review {
    const TYPE: &'static str = "review";
    type Command = ReviewCommand;
    type Event = ReviewEvent;
    type Error = ReviewError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use ReviewEvent as E;
        if let E::ReviewWritten {
            review_id,
            author,
            sku,
            rating,
            title,
            text,
            verified_purchase,
            at,
        } = event
        {
            self.written = Some(WrittenReview {
                review_id,
                author,
                sku,
                rating,
                title,
                text,
                verified_purchase,
                hidden: false,
                written_at: at,
                edited_at: None,
                helpful_voters: BTreeSet::new(),
            });
            return;
        }
        let Some(review) = self.written.as_mut() else {
            return;
        };
        match event {
            E::ReviewWritten { .. } => {}
            E::ReviewEdited {
                rating,
                title,
                text,
                verified_purchase,
                at,
            } => {
                review.rating = rating;
                review.title = title;
                review.text = text;
                review.verified_purchase = verified_purchase;
                review.edited_at = Some(at);
            }
            E::ReviewVotedHelpful { voter, .. } => {
                review.helpful_voters.insert(voter);
            }
            E::ReviewHidden { .. } => review.hidden = true,
            E::ReviewPublished { .. } => review.hidden = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;

    type F = TestFramework<Review>;

    fn author() -> CustomerId {
        CustomerId::new(uuid(1))
    }

    fn voter(n: u128) -> CustomerId {
        CustomerId::new(uuid(100 + n))
    }

    fn review_id() -> ReviewId {
        crate::derived_ids::review_id_of(author(), &sku("MUG-1"))
    }

    fn stars(n: i64) -> Rating {
        Rating::new(n).expect("valid test rating")
    }

    fn write_cmd() -> ReviewCommand {
        ReviewCommand::Write {
            review_id: review_id(),
            author: author(),
            sku: sku("MUG-1"),
            rating: stars(4),
            title: "  Solid mug ".into(),
            text: "Keeps coffee warm.".into(),
            verified_purchase: true,
            at: t(10),
        }
    }

    fn written() -> ReviewEvent {
        ReviewEvent::ReviewWritten {
            review_id: review_id(),
            author: author(),
            sku: sku("MUG-1"),
            rating: stars(4),
            title: "Solid mug".into(),
            text: "Keeps coffee warm.".into(),
            verified_purchase: true,
            at: t(10),
        }
    }

    fn unverified() -> ReviewEvent {
        let ReviewEvent::ReviewWritten {
            review_id,
            author,
            sku,
            rating,
            title,
            text,
            at,
            ..
        } = written()
        else {
            unreachable!()
        };
        ReviewEvent::ReviewWritten {
            review_id,
            author,
            sku,
            rating,
            title,
            text,
            verified_purchase: false,
            at,
        }
    }

    fn edit(rating: i64, title: &str, verified_purchase: bool) -> ReviewCommand {
        ReviewCommand::Edit {
            author: author(),
            rating: stars(rating),
            title: title.into(),
            text: "Keeps coffee warm.".into(),
            verified_purchase,
            at: t(20),
        }
    }

    fn hidden() -> ReviewEvent {
        ReviewEvent::ReviewHidden {
            reason: "spam".into(),
            at: t(30),
        }
    }

    #[test]
    fn a_rating_is_one_to_five_stars() {
        for n in 1..=5 {
            assert_eq!(stars(n).stars(), n as u8);
        }
        for n in [0, 6, -1, 256] {
            assert_eq!(Rating::new(n), Err(ReviewError::RatingOutOfRange(n)));
        }
        assert!(serde_json::from_str::<Rating>("0").is_err());
        assert!(serde_json::from_str::<Rating>("6").is_err());
        assert_eq!(serde_json::from_str::<Rating>("5").unwrap(), stars(5));
    }

    #[test]
    fn write_records_the_review_with_a_trimmed_title() {
        F::with(())
            .given_no_previous_events()
            .when(write_cmd())
            .then_expect_events(vec![written()]);
    }

    #[test]
    fn one_review_per_customer_and_product() {
        F::with(())
            .given(vec![written()])
            .when(write_cmd())
            .then_expect_error(ReviewError::AlreadyReviewed);
    }

    #[test]
    fn write_checks_title_and_text() {
        let with = |title: String, text: String| {
            let ReviewCommand::Write {
                review_id,
                author,
                sku,
                rating,
                verified_purchase,
                at,
                ..
            } = write_cmd()
            else {
                unreachable!()
            };
            ReviewCommand::Write {
                review_id,
                author,
                sku,
                rating,
                title,
                text,
                verified_purchase,
                at,
            }
        };
        F::with(())
            .given_no_previous_events()
            .when(with("   ".into(), "x".into()))
            .then_expect_error(ReviewError::EmptyTitle);
        F::with(())
            .given_no_previous_events()
            .when(with("t".repeat(TITLE_MAX_LEN + 1), "x".into()))
            .then_expect_error(ReviewError::TitleTooLong);
        F::with(())
            .given_no_previous_events()
            .when(with("ok".into(), "x".repeat(TEXT_MAX_LEN + 1)))
            .then_expect_error(ReviewError::TextTooLong);
        // an empty text is allowed (stars and a title say enough)
        F::with(())
            .given_no_previous_events()
            .when(with("ok".into(), "".into()))
            .then_expect_events(vec![ReviewEvent::ReviewWritten {
                review_id: review_id(),
                author: author(),
                sku: sku("MUG-1"),
                rating: stars(4),
                title: "ok".into(),
                text: "".into(),
                verified_purchase: true,
                at: t(10),
            }]);
    }

    #[test]
    fn every_command_before_write_is_not_found() {
        for command in [
            edit(3, "x", false),
            ReviewCommand::VoteHelpful {
                voter: voter(1),
                at: t(1),
            },
            ReviewCommand::Hide {
                reason: "x".into(),
                at: t(1),
            },
            ReviewCommand::Publish {
                reason: "x".into(),
                at: t(1),
            },
        ] {
            F::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(ReviewError::NotFound);
        }
    }

    #[test]
    fn the_author_edits_the_review() {
        F::with(())
            .given(vec![written()])
            .when(edit(2, "Chipped after a week", false))
            .then_expect_events(vec![ReviewEvent::ReviewEdited {
                rating: stars(2),
                title: "Chipped after a week".into(),
                text: "Keeps coffee warm.".into(),
                // a badge once given stays
                verified_purchase: true,
                at: t(20),
            }]);
    }

    #[test]
    fn an_edit_can_earn_the_badge_after_a_delivery() {
        F::with(())
            .given(vec![unverified()])
            .when(edit(4, "Solid mug", true))
            .then_expect_events(vec![ReviewEvent::ReviewEdited {
                rating: stars(4),
                title: "Solid mug".into(),
                text: "Keeps coffee warm.".into(),
                verified_purchase: true,
                at: t(20),
            }]);
    }

    #[test]
    fn an_edit_that_changes_nothing_writes_nothing() {
        F::with(())
            .given(vec![written()])
            .when(edit(4, " Solid mug", false))
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_the_author_edits_and_input_is_checked() {
        F::with(())
            .given(vec![written()])
            .when(ReviewCommand::Edit {
                author: voter(1),
                rating: stars(1),
                title: "mine now".into(),
                text: "".into(),
                verified_purchase: false,
                at: t(20),
            })
            .then_expect_error(ReviewError::NotAuthor);
        F::with(())
            .given(vec![written()])
            .when(edit(3, "", false))
            .then_expect_error(ReviewError::EmptyTitle);
    }

    #[test]
    fn a_customer_votes_helpful_once() {
        let vote = |n| ReviewCommand::VoteHelpful {
            voter: voter(n),
            at: t(40),
        };
        F::with(())
            .given(vec![written()])
            .when(vote(1))
            .then_expect_events(vec![ReviewEvent::ReviewVotedHelpful {
                voter: voter(1),
                at: t(40),
            }]);
        let voted = ReviewEvent::ReviewVotedHelpful {
            voter: voter(1),
            at: t(40),
        };
        F::with(())
            .given(vec![written(), voted.clone()])
            .when(vote(1))
            .then_expect_error(ReviewError::AlreadyVoted);
        F::with(())
            .given(vec![written(), voted])
            .when(vote(2))
            .then_expect_events(vec![ReviewEvent::ReviewVotedHelpful {
                voter: voter(2),
                at: t(40),
            }]);
    }

    #[test]
    fn the_author_cannot_vote_and_nobody_votes_on_a_hidden_review() {
        F::with(())
            .given(vec![written()])
            .when(ReviewCommand::VoteHelpful {
                voter: author(),
                at: t(40),
            })
            .then_expect_error(ReviewError::OwnReview);
        F::with(())
            .given(vec![written(), hidden()])
            .when(ReviewCommand::VoteHelpful {
                voter: voter(1),
                at: t(40),
            })
            .then_expect_error(ReviewError::Hidden);
    }

    #[test]
    fn staff_hide_and_publish_with_a_reason() {
        F::with(())
            .given(vec![written()])
            .when(ReviewCommand::Hide {
                reason: " spam ".into(),
                at: t(30),
            })
            .then_expect_events(vec![hidden()]);
        F::with(())
            .given(vec![written(), hidden()])
            .when(ReviewCommand::Publish {
                reason: "appeal accepted".into(),
                at: t(50),
            })
            .then_expect_events(vec![ReviewEvent::ReviewPublished {
                reason: "appeal accepted".into(),
                at: t(50),
            }]);
    }

    #[test]
    fn hiding_a_hidden_or_publishing_a_visible_review_is_a_no_op() {
        F::with(())
            .given(vec![written(), hidden()])
            .when(ReviewCommand::Hide {
                reason: "again".into(),
                at: t(31),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![written()])
            .when(ReviewCommand::Publish {
                reason: "fine".into(),
                at: t(31),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn moderation_needs_a_reason() {
        F::with(())
            .given(vec![written()])
            .when(ReviewCommand::Hide {
                reason: "  ".into(),
                at: t(30),
            })
            .then_expect_error(ReviewError::EmptyReason);
        F::with(())
            .given(vec![written(), hidden()])
            .when(ReviewCommand::Publish {
                reason: "r".repeat(REASON_MAX_LEN + 1),
                at: t(30),
            })
            .then_expect_error(ReviewError::ReasonTooLong);
    }

    #[test]
    fn state_follows_events() {
        let mut review = Review::default();
        for event in [
            unverified(),
            ReviewEvent::ReviewEdited {
                rating: stars(5),
                title: "Great".into(),
                text: "".into(),
                verified_purchase: true,
                at: t(20),
            },
            ReviewEvent::ReviewVotedHelpful {
                voter: voter(1),
                at: t(21),
            },
            hidden(),
        ] {
            review.apply(event);
        }
        let state = review.written().expect("written");
        assert_eq!(state.rating, stars(5));
        assert_eq!(state.title, "Great");
        assert!(state.verified_purchase && state.hidden);
        assert_eq!(state.edited_at, Some(t(20)));
        assert_eq!(state.helpful_voters.len(), 1);
        review.apply(ReviewEvent::ReviewPublished {
            reason: "ok".into(),
            at: t(40),
        });
        assert!(!review.written().unwrap().hidden);
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            written(),
            ReviewEvent::ReviewEdited {
                rating: stars(1),
                title: "T".into(),
                text: "X".into(),
                verified_purchase: false,
                at: t(2),
            },
            ReviewEvent::ReviewVotedHelpful {
                voter: voter(1),
                at: t(3),
            },
            hidden(),
            ReviewEvent::ReviewPublished {
                reason: "ok".into(),
                at: t(4),
            },
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}

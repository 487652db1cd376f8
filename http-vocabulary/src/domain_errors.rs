//! How domain refusals and store failures become API errors: one place that maps every domain
//! error variant to a code of the shared vocabulary.

use domain::{
    CartError, CatalogError, InventoryError, OrderError, PaymentError, ProductError, ReviewError,
};
use eventlog::store::{ExecuteError, Refusal};

use crate::{ApiError, ErrorCode};

/// The API error code of a domain error.
pub trait Coded: std::error::Error {
    fn code(&self) -> ErrorCode;
}

impl Coded for ProductError {
    fn code(&self) -> ErrorCode {
        match self {
            ProductError::NotFound | ProductError::ImageNotFound(_) => ErrorCode::NotFound,
            ProductError::AlreadyExists
            | ProductError::Discontinued
            | ProductError::TooManyImages => ErrorCode::Conflict,
            ProductError::EmptyRevision
            | ProductError::EmptyName
            | ProductError::NameTooLong
            | ProductError::EmptyCategory
            | ProductError::CategoryTooLong
            | ProductError::DescriptionTooLong
            | ProductError::NonPositivePrice(_)
            | ProductError::CurrencyChange { .. }
            | ProductError::BasePriceRemoval(_)
            | ProductError::InvalidOptions(_)
            | ProductError::InvalidOptionValues(_)
            | ProductError::NoBasePrice
            | ProductError::AltTooLong
            | ProductError::EmptyImage => ErrorCode::Validation,
            ProductError::OptionsInUse
            | ProductError::VariantOfVariant
            | ProductError::NoOptions
            | ProductError::DuplicateVariant(_)
            | ProductError::VariantSkuTaken(_) => ErrorCode::Conflict,
            ProductError::NoPriceInCurrency(_) => ErrorCode::NoPriceInCurrency,
        }
    }
}

impl Coded for CatalogError {
    fn code(&self) -> ErrorCode {
        match self {
            CatalogError::UnknownCategory(_) => ErrorCode::NotFound,
            CatalogError::CategoryExists(_) => ErrorCode::Conflict,
            CatalogError::Cycle { .. } => ErrorCode::CategoryCycle,
            CatalogError::InvalidSlug(_)
            | CatalogError::EmptyName
            | CatalogError::NameTooLong
            | CatalogError::UnknownParent(_)
            | CatalogError::TooManyFeatured
            | CatalogError::FeaturedTwice(_) => ErrorCode::Validation,
        }
    }
}

impl Coded for InventoryError {
    fn code(&self) -> ErrorCode {
        match self {
            InventoryError::AdjustmentBelowZero { .. } => ErrorCode::InsufficientStock,
            InventoryError::NotCommitted(_) | InventoryError::ReturnExceedsCommitted { .. } => {
                ErrorCode::Conflict
            }
            InventoryError::SkuMismatch { .. }
            | InventoryError::EmptyReason
            | InventoryError::ZeroAdjustment
            | InventoryError::Overflow => ErrorCode::Validation,
        }
    }
}

impl Coded for CartError {
    fn code(&self) -> ErrorCode {
        match self {
            CartError::NotFound => ErrorCode::NotFound,
            CartError::AlreadyExists
            | CartError::AlreadyCheckedOut
            | CartError::AlreadyMerged
            | CartError::EmptyCart
            | CartError::NotACustomerCart
            | CartError::NotAGuestCart
            | CartError::PricedLinesMismatch => ErrorCode::Conflict,
            CartError::UnknownItem(_) => ErrorCode::NotFound,
            CartError::CurrencyMismatch { .. }
            | CartError::NegativePrice(_)
            | CartError::TooManyLines
            | CartError::QuantityCapExceeded { .. }
            | CartError::InvalidCouponCode
            | CartError::InvalidPercent(_)
            | CartError::NonPositiveDiscount(_)
            | CartError::EmptyPaymentMethod
            | CartError::Amount(_) => ErrorCode::Validation,
        }
    }
}

impl Coded for OrderError {
    fn code(&self) -> ErrorCode {
        match self {
            OrderError::NotFound => ErrorCode::NotFound,
            OrderError::AlreadyPlaced
            | OrderError::InvalidTransition { .. }
            | OrderError::RefundExceedsRemaining { .. } => ErrorCode::Conflict,
            OrderError::NoLines
            | OrderError::CurrencyMismatch { .. }
            | OrderError::NegativeAmount { .. }
            | OrderError::DiscountExceedsSubtotal { .. }
            | OrderError::EmptyPaymentMethod
            | OrderError::EmptyReason
            | OrderError::NonPositiveRefund(_)
            | OrderError::Amount(_) => ErrorCode::Validation,
        }
    }
}

impl Coded for PaymentError {
    fn code(&self) -> ErrorCode {
        match self {
            PaymentError::NotFound => ErrorCode::NotFound,
            PaymentError::NonPositiveAmount(_)
            | PaymentError::EmptyMethod
            | PaymentError::EmptyProviderRef
            | PaymentError::CurrencyMismatch { .. }
            | PaymentError::Amount(_) => ErrorCode::Validation,
            PaymentError::AlreadyRequested
            | PaymentError::NotAuthorized
            | PaymentError::NotCaptured
            | PaymentError::AlreadyCaptured
            | PaymentError::Closed(_)
            | PaymentError::CaptureExceedsAuthorized { .. }
            | PaymentError::RefundExceedsCaptured { .. } => ErrorCode::Conflict,
        }
    }
}

impl Coded for ReviewError {
    fn code(&self) -> ErrorCode {
        match self {
            ReviewError::NotFound => ErrorCode::NotFound,
            ReviewError::AlreadyReviewed => ErrorCode::AlreadyReviewed,
            ReviewError::AlreadyVoted => ErrorCode::AlreadyVoted,
            ReviewError::NotAuthor | ReviewError::OwnReview => ErrorCode::Forbidden,
            ReviewError::Hidden => ErrorCode::Conflict,
            ReviewError::RatingOutOfRange(_)
            | ReviewError::EmptyTitle
            | ReviewError::TitleTooLong
            | ReviewError::TextTooLong
            | ReviewError::EmptyReason
            | ReviewError::ReasonTooLong => ErrorCode::Validation,
        }
    }
}

impl<E: Coded> From<ExecuteError<E>> for ApiError {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Domain(domain) => ApiError::new(domain.code(), domain.to_string()),
            ExecuteError::Refused(Refusal::NotFound) => ApiError::not_found("not found"),
            ExecuteError::Refused(Refusal::Forbidden) => {
                ApiError::forbidden("this belongs to someone else")
            }
            ExecuteError::Conflict { attempts } => ApiError::new(
                ErrorCode::ConcurrencyConflict,
                format!("the resource kept changing during {attempts} attempts; retry"),
            )
            .with_retry_after(1),
            ExecuteError::Store(eventlog::Error::Database(db)) => ApiError::from(db),
            ExecuteError::Store(other) => ApiError::internal(other),
        }
    }
}

impl From<eventlog::Error> for ApiError {
    fn from(error: eventlog::Error) -> Self {
        match error {
            eventlog::Error::Database(db) => ApiError::from(db),
            other => ApiError::internal(other),
        }
    }
}

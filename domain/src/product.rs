//! The product (catalogue entry) aggregate: creation, renaming, description,
//! pricing, categorisation and discontinuation of a sellable SKU, and its images.
//!
//! Prices: a product has a *base price* (from `ProductCreated`, changed by `ProductRepriced`,
//! always in the same currency) and a price list of further currencies (`ProductPriceSet`,
//! `ProductPriceRemoved`). A cart is priced in its own currency ([`Product::price_for_cart`]).
//!
//! Variants: a product declares options (`size: S, M, L`) and adds variants, each a SKU with
//! one value of every option (`ProductVariantAdded` on the parent, which keeps combinations
//! unique). Each variant is a product of its own (its stream starts `ProductCreated`,
//! `ProductVariantOf`), so it has its own price list and its own inventory stream, and a cart
//! line of it is a line like any other.
//!
//! Images: an image's bytes live in object storage (the `media` crate), addressed by their
//! sha256; the product records only which images it shows, in which order, with their alt text.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{Currency, Money, Sku};

/// Longest accepted product name, in characters.
pub const NAME_MAX_LEN: usize = 200;
/// Longest accepted category, in characters.
pub const CATEGORY_MAX_LEN: usize = 100;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_LEN: usize = 10_000;
/// Most options a product may declare.
pub const OPTIONS_MAX: usize = 5;
/// Most values an option may have.
pub const OPTION_VALUES_MAX: usize = 50;
/// Longest option name or value, in characters.
pub const OPTION_TEXT_MAX_LEN: usize = 50;

/// An option a product comes in, with its values in display order (`size`: `S`, `M`, `L`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

/// A variant's value of every option of its parent, by option name.
pub type OptionValues = BTreeMap<String, String>;
/// Longest accepted alt text of an image, in characters.
pub const ALT_MAX_LEN: usize = 250;
/// Most images one product shows.
pub const MAX_IMAGES: usize = 10;

/// An image's id: the lowercase hex sha256 of its original bytes (content addressed, so the
/// same upload is the same image).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[0-9a-f]{64}$"))]
pub struct ImageId(String);

/// Why a text is not an [`ImageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an image id is 64 lowercase hex digits (a sha256)")]
pub struct InvalidImageId;

impl ImageId {
    pub fn parse(input: impl Into<String>) -> Result<Self, InvalidImageId> {
        let input = input.into();
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if input.len() == 64 && input.chars().all(hex) {
            Ok(Self(input))
        } else {
            Err(InvalidImageId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageId {
    type Error = InvalidImageId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<ImageId> for String {
    fn from(value: ImageId) -> Self {
        value.0
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The encodings a product image may have (read from its bytes, never from a client's
/// `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ImageFormat {
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// The file extension of its objects.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
        }
    }

    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type {
            "image/png" => Some(Self::Png),
            "image/jpeg" => Some(Self::Jpeg),
            _ => None,
        }
    }
}

/// An image a product shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductImage {
    pub image_id: ImageId,
    pub format: ImageFormat,
    /// Of the original, in pixels.
    pub width: u32,
    pub height: u32,
    /// What the image shows, for screen readers; may be empty.
    pub alt: String,
}

/// Commands accepted by [`Product`].
#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    Create {
        sku: Sku,
        name: String,
        description: String,
        category: String,
        price: Money,
        created_at: DateTime<Utc>,
    },
    Rename {
        name: String,
    },
    Describe {
        description: String,
    },
    Reprice {
        price: Money,
    },
    Categorise {
        category: String,
    },
    Discontinue {
        at: DateTime<Utc>,
    },
    /// Sets the price in `price`'s currency: the base price when it is the base currency
    /// (as [`ProductCommand::Reprice`]), else the price list's entry for that currency.
    SetPrice {
        price: Money,
    },
    /// Removes the price list's entry for `currency` (the base price cannot be removed).
    RemovePrice {
        currency: Currency,
    },
    /// Declares the options the product's variants choose from (not on a variant; fixed once
    /// a variant exists).
    DeclareOptions {
        options: Vec<ProductOption>,
    },
    /// On the parent: adds a variant SKU with one value of every declared option.
    AddVariant {
        sku: Sku,
        option_values: OptionValues,
    },
    /// On the variant's own (new) stream: creates it as a product that is a variant of
    /// `parent`, with `prices` (the first is the base price; the others other currencies).
    CreateVariant {
        sku: Sku,
        parent: Sku,
        option_values: OptionValues,
        name: String,
        description: String,
        category: String,
        prices: Vec<Money>,
        created_at: DateTime<Utc>,
    },
    /// Several changes at once, all or nothing (what a staff edit form sends); fields left
    /// `None` are unchanged.
    Revise {
        name: Option<String>,
        description: Option<String>,
        category: Option<String>,
        price: Option<Money>,
    },
    /// Shows an image (already stored) after the product's other images; an image it already
    /// shows is a no-op.
    AddImage {
        image: ProductImage,
    },
    RemoveImage {
        image_id: ImageId,
    },
}

/// Events of the product stream (wire contract, version "1").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ProductEvent {
    ProductCreated {
        sku: Sku,
        name: String,
        description: String,
        category: String,
        price: Money,
        created_at: DateTime<Utc>,
    },
    ProductRenamed {
        name: String,
    },
    ProductDescribed {
        description: String,
    },
    ProductRepriced {
        price: Money,
    },
    ProductCategorised {
        category: String,
    },
    ProductDiscontinued {
        at: DateTime<Utc>,
    },
    /// The price in a currency other than the base price's (which `ProductRepriced` sets).
    ProductPriceSet {
        price: Money,
    },
    /// The product has no price in `currency` any more (never the base currency).
    ProductPriceRemoved {
        currency: Currency,
    },
    /// The options the product's variants choose from.
    ProductOptionsDeclared {
        options: Vec<ProductOption>,
    },
    /// On the parent: `sku` is a variant with these option values.
    ProductVariantAdded {
        sku: Sku,
        option_values: OptionValues,
    },
    /// On the variant, right after its `ProductCreated`: which product it is a variant of.
    ProductVariantOf {
        parent: Sku,
        option_values: OptionValues,
    },
    ProductImageAdded {
        image: ProductImage,
    },
    ProductImageRemoved {
        image_id: ImageId,
    },
}

/// Every [`ProductEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "ProductCreated",
    "ProductRenamed",
    "ProductDescribed",
    "ProductRepriced",
    "ProductCategorised",
    "ProductDiscontinued",
    "ProductPriceSet",
    "ProductPriceRemoved",
    "ProductOptionsDeclared",
    "ProductVariantAdded",
    "ProductVariantOf",
    "ProductImageAdded",
    "ProductImageRemoved",
];

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProductCreated { .. } => "ProductCreated",
            Self::ProductRenamed { .. } => "ProductRenamed",
            Self::ProductDescribed { .. } => "ProductDescribed",
            Self::ProductRepriced { .. } => "ProductRepriced",
            Self::ProductCategorised { .. } => "ProductCategorised",
            Self::ProductDiscontinued { .. } => "ProductDiscontinued",
            Self::ProductPriceSet { .. } => "ProductPriceSet",
            Self::ProductPriceRemoved { .. } => "ProductPriceRemoved",
            Self::ProductOptionsDeclared { .. } => "ProductOptionsDeclared",
            Self::ProductVariantAdded { .. } => "ProductVariantAdded",
            Self::ProductVariantOf { .. } => "ProductVariantOf",
            Self::ProductImageAdded { .. } => "ProductImageAdded",
            Self::ProductImageRemoved { .. } => "ProductImageRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why a product command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("a revision must change at least one field")]
    EmptyRevision,
    #[error("product already exists")]
    AlreadyExists,
    #[error("product not found")]
    NotFound,
    #[error("product is discontinued")]
    Discontinued,
    #[error("product name must not be empty")]
    EmptyName,
    #[error("product name must be at most {max} characters", max = NAME_MAX_LEN)]
    NameTooLong,
    #[error("product category must not be empty")]
    EmptyCategory,
    #[error("product category must be at most {max} characters", max = CATEGORY_MAX_LEN)]
    CategoryTooLong,
    #[error("product description must be at most {max} characters", max = DESCRIPTION_MAX_LEN)]
    DescriptionTooLong,
    #[error("price must be positive, got {0}")]
    NonPositivePrice(Money),
    #[error("price currency cannot change from {from} to {to}")]
    CurrencyChange { from: Currency, to: Currency },
    #[error("the base price (in {0}) cannot be removed; reprice it instead")]
    BasePriceRemoval(Currency),
    #[error("the product has no price in {0}")]
    NoPriceInCurrency(Currency),
    #[error("options: {0}")]
    InvalidOptions(String),
    #[error("options cannot change once the product has variants")]
    OptionsInUse,
    #[error("a variant has no variants of its own")]
    VariantOfVariant,
    #[error("the product declares no options to make variants of")]
    NoOptions,
    #[error("option values: {0}")]
    InvalidOptionValues(String),
    #[error("variant {0} already has these option values")]
    DuplicateVariant(Sku),
    #[error("{0} is already a product or another variant")]
    VariantSkuTaken(Sku),
    #[error("a variant needs a base price")]
    NoBasePrice,
    #[error("an image's alt text must be at most {max} characters", max = ALT_MAX_LEN)]
    AltTooLong,
    #[error("an image must be at least one pixel wide and high")]
    EmptyImage,
    #[error("a product shows at most {max} images", max = MAX_IMAGES)]
    TooManyImages,
    #[error("the product shows no image {0}")]
    ImageNotFound(ImageId),
}

/// Current state of a created product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub created_at: DateTime<Utc>,
    pub discontinued_at: Option<DateTime<Utc>>,
    /// Prices in currencies other than the base price's (absent from snapshots taken before
    /// price lists existed).
    #[serde(default)]
    pub other_prices: BTreeMap<Currency, Money>,
    /// The options its variants choose from (none: a product without variants).
    #[serde(default)]
    pub options: Vec<ProductOption>,
    /// Its variants' SKUs and option values.
    #[serde(default)]
    pub variants: BTreeMap<Sku, OptionValues>,
    /// The product this one is a variant of, with its option values.
    #[serde(default)]
    pub variant_of: Option<(Sku, OptionValues)>,
    /// In the order they are shown (snapshots from before images had none).
    #[serde(default)]
    pub images: Vec<ProductImage>,
}

impl ProductDetails {
    /// The price in `currency`: the base price in its currency, else the price list's entry.
    pub fn price_in(&self, currency: Currency) -> Option<Money> {
        if currency == self.price.currency {
            Some(self.price)
        } else {
            self.other_prices.get(&currency).copied()
        }
    }

    /// Every price: the base price first, then the others by currency code.
    pub fn prices(&self) -> Vec<Money> {
        std::iter::once(self.price)
            .chain(self.other_prices.values().copied())
            .collect()
    }
}

/// The product aggregate; `None` until created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    details: Option<ProductDetails>,
}

fn valid_name(name: &str) -> Result<String, ProductError> {
    let name = name.trim();
    if name.is_empty() {
        Err(ProductError::EmptyName)
    } else if name.chars().count() > NAME_MAX_LEN {
        Err(ProductError::NameTooLong)
    } else {
        Ok(name.to_owned())
    }
}

fn valid_category(category: &str) -> Result<String, ProductError> {
    let category = category.trim();
    if category.is_empty() {
        Err(ProductError::EmptyCategory)
    } else if category.chars().count() > CATEGORY_MAX_LEN {
        Err(ProductError::CategoryTooLong)
    } else {
        Ok(category.to_owned())
    }
}

fn valid_description(description: &str) -> Result<String, ProductError> {
    let description = description.trim();
    if description.chars().count() > DESCRIPTION_MAX_LEN {
        Err(ProductError::DescriptionTooLong)
    } else {
        Ok(description.to_owned())
    }
}

fn valid_image(image: ProductImage) -> Result<ProductImage, ProductError> {
    let alt = image.alt.trim();
    if alt.chars().count() > ALT_MAX_LEN {
        return Err(ProductError::AltTooLong);
    }
    if image.width == 0 || image.height == 0 {
        return Err(ProductError::EmptyImage);
    }
    Ok(ProductImage {
        alt: alt.to_owned(),
        ..image
    })
}

fn valid_price(price: Money) -> Result<Money, ProductError> {
    if price.is_positive() {
        Ok(price)
    } else {
        Err(ProductError::NonPositivePrice(price))
    }
}

fn valid_option_text(what: &str, text: &str) -> Result<String, ProductError> {
    let text = text.trim();
    if text.is_empty() {
        Err(ProductError::InvalidOptions(format!(
            "{what} must not be empty"
        )))
    } else if text.chars().count() > OPTION_TEXT_MAX_LEN {
        Err(ProductError::InvalidOptions(format!(
            "{what} must be at most {OPTION_TEXT_MAX_LEN} characters"
        )))
    } else {
        Ok(text.to_owned())
    }
}

fn valid_options(options: Vec<ProductOption>) -> Result<Vec<ProductOption>, ProductError> {
    if options.is_empty() || options.len() > OPTIONS_MAX {
        return Err(ProductError::InvalidOptions(format!(
            "between 1 and {OPTIONS_MAX} options"
        )));
    }
    let mut valid: Vec<ProductOption> = Vec::with_capacity(options.len());
    for option in options {
        let name = valid_option_text("an option's name", &option.name)?;
        if valid.iter().any(|o| o.name == name) {
            return Err(ProductError::InvalidOptions(format!(
                "option {name} is declared twice"
            )));
        }
        if option.values.is_empty() || option.values.len() > OPTION_VALUES_MAX {
            return Err(ProductError::InvalidOptions(format!(
                "option {name} needs between 1 and {OPTION_VALUES_MAX} values"
            )));
        }
        let mut values: Vec<String> = Vec::with_capacity(option.values.len());
        for value in &option.values {
            let value = valid_option_text("a value", value)?;
            if values.contains(&value) {
                return Err(ProductError::InvalidOptions(format!(
                    "option {name} has the value {value} twice"
                )));
            }
            values.push(value);
        }
        valid.push(ProductOption { name, values });
    }
    Ok(valid)
}

/// `values` with one declared value of every option and nothing else, trimmed.
fn valid_option_values(
    options: &[ProductOption],
    values: &OptionValues,
) -> Result<OptionValues, ProductError> {
    let mut valid = OptionValues::new();
    for (name, value) in values {
        let (name, value) = (name.trim(), value.trim());
        let Some(option) = options.iter().find(|o| o.name == name) else {
            return Err(ProductError::InvalidOptionValues(format!(
                "the product has no option {name}"
            )));
        };
        if !option.values.iter().any(|v| v == value) {
            return Err(ProductError::InvalidOptionValues(format!(
                "{value} is not a value of {name}"
            )));
        }
        valid.insert(name.to_owned(), value.to_owned());
    }
    if let Some(missing) = options.iter().find(|o| !valid.contains_key(&o.name)) {
        return Err(ProductError::InvalidOptionValues(format!(
            "no value of {}",
            missing.name
        )));
    }
    Ok(valid)
}

impl Product {
    pub fn details(&self) -> Option<&ProductDetails> {
        self.details.as_ref()
    }

    pub fn is_discontinued(&self) -> bool {
        self.details
            .as_ref()
            .is_some_and(|d| d.discontinued_at.is_some())
    }

    /// The unit price of a line put in a cart of `cart_currency` (`None`: a cart without a
    /// currency yet, which takes the base price's): only a product that can be sold, and only
    /// in a currency it has a price in.
    pub fn price_for_cart(&self, cart_currency: Option<Currency>) -> Result<Money, ProductError> {
        let details = self.details.as_ref().ok_or(ProductError::NotFound)?;
        if details.discontinued_at.is_some() {
            return Err(ProductError::Discontinued);
        }
        let currency = cart_currency.unwrap_or(details.price.currency);
        details
            .price_in(currency)
            .ok_or(ProductError::NoPriceInCurrency(currency))
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        use ProductCommand as C;
        use ProductEvent as E;

        let Some(details) = &self.details else {
            return match command {
                C::Create {
                    sku,
                    name,
                    description,
                    category,
                    price,
                    created_at,
                } => Ok(vec![E::ProductCreated {
                    sku,
                    name: valid_name(&name)?,
                    description: valid_description(&description)?,
                    category: valid_category(&category)?,
                    price: valid_price(price)?,
                    created_at,
                }]),
                C::CreateVariant {
                    sku,
                    parent,
                    option_values,
                    name,
                    description,
                    category,
                    prices,
                    created_at,
                } => {
                    if sku == parent {
                        return Err(ProductError::VariantOfVariant);
                    }
                    let mut prices = prices.into_iter();
                    let price = valid_price(prices.next().ok_or(ProductError::NoBasePrice)?)?;
                    let mut events = vec![
                        E::ProductCreated {
                            sku,
                            name: valid_name(&name)?,
                            description: valid_description(&description)?,
                            category: valid_category(&category)?,
                            price,
                            created_at,
                        },
                        E::ProductVariantOf {
                            parent,
                            option_values,
                        },
                    ];
                    let mut seen = vec![price.currency];
                    for other in prices {
                        let other = valid_price(other)?;
                        if !seen.contains(&other.currency) {
                            seen.push(other.currency);
                            events.push(E::ProductPriceSet { price: other });
                        }
                    }
                    Ok(events)
                }
                _ => Err(ProductError::NotFound),
            };
        };

        let event = match command {
            C::Create { .. } => return Err(ProductError::AlreadyExists),
            // a retry of the same variant's creation changes nothing
            C::CreateVariant {
                parent,
                option_values,
                ..
            } => {
                return match &details.variant_of {
                    Some((p, values)) if *p == parent && *values == option_values => Ok(vec![]),
                    _ => Err(ProductError::AlreadyExists),
                }
            }
            C::Revise {
                name,
                description,
                category,
                price,
            } => {
                let changes: Vec<ProductCommand> = [
                    name.map(|name| C::Rename { name }),
                    description.map(|description| C::Describe { description }),
                    category.map(|category| C::Categorise { category }),
                    price.map(|price| C::Reprice { price }),
                ]
                .into_iter()
                .flatten()
                .collect();
                if changes.is_empty() {
                    return Err(ProductError::EmptyRevision);
                }
                let mut state = self.clone();
                let mut events = Vec::new();
                for change in changes {
                    for event in state.decide(change)? {
                        state.apply(event.clone());
                        events.push(event);
                    }
                }
                return Ok(events);
            }
            C::Discontinue { at } => details
                .discontinued_at
                .is_none()
                .then_some(E::ProductDiscontinued { at }),
            // taking an image down is allowed after discontinuation too
            C::RemoveImage { image_id } => {
                if !details.images.iter().any(|i| i.image_id == image_id) {
                    return Err(ProductError::ImageNotFound(image_id));
                }
                Some(E::ProductImageRemoved { image_id })
            }
            _ if details.discontinued_at.is_some() => return Err(ProductError::Discontinued),
            C::Rename { name } => {
                let name = valid_name(&name)?;
                (name != details.name).then_some(E::ProductRenamed { name })
            }
            C::Describe { description } => {
                let description = valid_description(&description)?;
                (description != details.description).then_some(E::ProductDescribed { description })
            }
            C::Reprice { price } => {
                let price = valid_price(price)?;
                if price.currency != details.price.currency {
                    return Err(ProductError::CurrencyChange {
                        from: details.price.currency,
                        to: price.currency,
                    });
                }
                (price != details.price).then_some(E::ProductRepriced { price })
            }
            C::Categorise { category } => {
                let category = valid_category(&category)?;
                (category != details.category).then_some(E::ProductCategorised { category })
            }
            C::SetPrice { price } => {
                let price = valid_price(price)?;
                if price.currency == details.price.currency {
                    (price != details.price).then_some(E::ProductRepriced { price })
                } else {
                    (details.other_prices.get(&price.currency) != Some(&price))
                        .then_some(E::ProductPriceSet { price })
                }
            }
            C::DeclareOptions { options } => {
                if details.variant_of.is_some() {
                    return Err(ProductError::VariantOfVariant);
                }
                let options = valid_options(options)?;
                if options == details.options {
                    None
                } else if !details.variants.is_empty() {
                    return Err(ProductError::OptionsInUse);
                } else {
                    Some(E::ProductOptionsDeclared { options })
                }
            }
            C::AddVariant { sku, option_values } => {
                if details.variant_of.is_some() {
                    return Err(ProductError::VariantOfVariant);
                }
                if details.options.is_empty() {
                    return Err(ProductError::NoOptions);
                }
                if sku == details.sku {
                    return Err(ProductError::VariantSkuTaken(sku));
                }
                let option_values = valid_option_values(&details.options, &option_values)?;
                match details.variants.get(&sku) {
                    Some(values) if *values == option_values => None,
                    Some(_) => return Err(ProductError::VariantSkuTaken(sku)),
                    None => {
                        if let Some((other, _)) = details
                            .variants
                            .iter()
                            .find(|(_, values)| **values == option_values)
                        {
                            return Err(ProductError::DuplicateVariant(other.clone()));
                        }
                        Some(E::ProductVariantAdded { sku, option_values })
                    }
                }
            }
            C::RemovePrice { currency } => {
                if currency == details.price.currency {
                    return Err(ProductError::BasePriceRemoval(currency));
                }
                details
                    .other_prices
                    .contains_key(&currency)
                    .then_some(E::ProductPriceRemoved { currency })
            }
            C::AddImage { image } => {
                let image = valid_image(image)?;
                if details.images.iter().any(|i| i.image_id == image.image_id) {
                    None
                } else if details.images.len() >= MAX_IMAGES {
                    return Err(ProductError::TooManyImages);
                } else {
                    Some(E::ProductImageAdded { image })
                }
            }
        };
        Ok(event.into_iter().collect())
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
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
        use ProductEvent as E;
        match event {
            E::ProductCreated {
                sku,
                name,
                description,
                category,
                price,
                created_at,
            } => {
                self.details = Some(ProductDetails {
                    sku,
                    name,
                    description,
                    category,
                    price,
                    created_at,
                    discontinued_at: None,
                    other_prices: BTreeMap::new(),
                    options: Vec::new(),
                    variants: BTreeMap::new(),
                    variant_of: None,
                    images: Vec::new(),
                });
            }
            other => {
                let Some(d) = self.details.as_mut() else {
                    return;
                };
                match other {
                    E::ProductCreated { .. } => {}
                    E::ProductRenamed { name } => d.name = name,
                    E::ProductDescribed { description } => d.description = description,
                    E::ProductRepriced { price } => d.price = price,
                    E::ProductCategorised { category } => d.category = category,
                    E::ProductDiscontinued { at } => d.discontinued_at = Some(at),
                    E::ProductPriceSet { price } => {
                        d.other_prices.insert(price.currency, price);
                    }
                    E::ProductPriceRemoved { currency } => {
                        d.other_prices.remove(&currency);
                    }
                    E::ProductOptionsDeclared { options } => d.options = options,
                    E::ProductVariantAdded { sku, option_values } => {
                        d.variants.insert(sku, option_values);
                    }
                    E::ProductVariantOf {
                        parent,
                        option_values,
                    } => d.variant_of = Some((parent, option_values)),
                    E::ProductImageAdded { image } => d.images.push(image),
                    E::ProductImageRemoved { image_id } => {
                        d.images.retain(|i| i.image_id != image_id)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;

    type F = TestFramework<Product>;

    fn revise(name: Option<&str>, price: Option<Money>) -> ProductCommand {
        ProductCommand::Revise {
            name: name.map(str::to_owned),
            description: None,
            category: None,
            price,
        }
    }

    #[test]
    fn revise_emits_one_event_per_changed_field() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Revise {
                name: Some("Big mug".into()),
                description: Some("A mug".into()),
                category: Some("Kitchenware".into()),
                price: Some(eur(1499)),
            })
            .then_expect_events(vec![
                ProductEvent::ProductRenamed {
                    name: "Big mug".into(),
                },
                ProductEvent::ProductCategorised {
                    category: "Kitchenware".into(),
                },
                ProductEvent::ProductRepriced { price: eur(1499) },
            ]);
    }

    #[test]
    fn revise_is_all_or_nothing() {
        F::with(())
            .given(vec![created()])
            .when(revise(Some("Big mug"), Some(eur(0))))
            .then_expect_error(ProductError::NonPositivePrice(eur(0)));
    }

    #[test]
    fn revise_rejects_an_empty_revision_and_unknown_or_discontinued_products() {
        F::with(())
            .given(vec![created()])
            .when(revise(None, None))
            .then_expect_error(ProductError::EmptyRevision);
        F::with(())
            .given_no_previous_events()
            .when(revise(Some("x"), None))
            .then_expect_error(ProductError::NotFound);
        F::with(())
            .given(vec![created(), discontinued()])
            .when(revise(Some("x"), None))
            .then_expect_error(ProductError::Discontinued);
    }

    fn created() -> ProductEvent {
        ProductEvent::ProductCreated {
            sku: sku("MUG-1"),
            name: "Mug".into(),
            description: "A mug".into(),
            category: "Kitchen".into(),
            price: eur(1299),
            created_at: t(0),
        }
    }

    fn discontinued() -> ProductEvent {
        ProductEvent::ProductDiscontinued { at: t(10) }
    }

    fn create_cmd() -> ProductCommand {
        ProductCommand::Create {
            sku: sku("MUG-1"),
            name: "  Mug ".into(),
            description: "A mug".into(),
            category: "Kitchen".into(),
            price: eur(1299),
            created_at: t(0),
        }
    }

    #[test]
    fn create_emits_created_with_trimmed_name() {
        F::with(())
            .given_no_previous_events()
            .when(create_cmd())
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_twice_is_rejected() {
        F::with(())
            .given(vec![created()])
            .when(create_cmd())
            .then_expect_error(ProductError::AlreadyExists);
    }

    #[test]
    fn create_rejects_empty_name() {
        let mut cmd = create_cmd();
        if let ProductCommand::Create { name, .. } = &mut cmd {
            *name = "   ".into();
        }
        F::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(ProductError::EmptyName);
    }

    #[test]
    fn create_rejects_too_long_name() {
        let mut cmd = create_cmd();
        if let ProductCommand::Create { name, .. } = &mut cmd {
            *name = "x".repeat(NAME_MAX_LEN + 1);
        }
        F::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(ProductError::NameTooLong);
    }

    #[test]
    fn create_rejects_empty_category() {
        let mut cmd = create_cmd();
        if let ProductCommand::Create { category, .. } = &mut cmd {
            *category = "".into();
        }
        F::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(ProductError::EmptyCategory);
    }

    #[test]
    fn create_rejects_too_long_category() {
        let mut cmd = create_cmd();
        if let ProductCommand::Create { category, .. } = &mut cmd {
            *category = "c".repeat(CATEGORY_MAX_LEN + 1);
        }
        F::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(ProductError::CategoryTooLong);
    }

    #[test]
    fn create_rejects_too_long_description() {
        let mut cmd = create_cmd();
        if let ProductCommand::Create { description, .. } = &mut cmd {
            *description = "d".repeat(DESCRIPTION_MAX_LEN + 1);
        }
        F::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(ProductError::DescriptionTooLong);
    }

    #[test]
    fn create_rejects_zero_and_negative_price() {
        for amount in [0, -1] {
            let mut cmd = create_cmd();
            if let ProductCommand::Create { price, .. } = &mut cmd {
                *price = eur(amount);
            }
            F::with(())
                .given_no_previous_events()
                .when(cmd)
                .then_expect_error(ProductError::NonPositivePrice(eur(amount)));
        }
    }

    #[test]
    fn every_command_before_create_is_not_found() {
        for cmd in [
            ProductCommand::Rename { name: "X".into() },
            ProductCommand::Describe {
                description: "X".into(),
            },
            ProductCommand::Reprice { price: eur(1) },
            ProductCommand::Categorise {
                category: "X".into(),
            },
            ProductCommand::Discontinue { at: t(1) },
        ] {
            F::with(())
                .given_no_previous_events()
                .when(cmd)
                .then_expect_error(ProductError::NotFound);
        }
    }

    #[test]
    fn rename() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Rename {
                name: "Big mug".into(),
            })
            .then_expect_events(vec![ProductEvent::ProductRenamed {
                name: "Big mug".into(),
            }]);
    }

    #[test]
    fn rename_to_same_name_is_noop() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Rename {
                name: " Mug ".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn rename_rejects_empty_name() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Rename { name: "".into() })
            .then_expect_error(ProductError::EmptyName);
    }

    #[test]
    fn describe() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Describe {
                description: "A big mug".into(),
            })
            .then_expect_events(vec![ProductEvent::ProductDescribed {
                description: "A big mug".into(),
            }]);
    }

    #[test]
    fn describe_same_is_noop_and_empty_is_allowed() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Describe {
                description: "A mug".into(),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Describe {
                description: "".into(),
            })
            .then_expect_events(vec![ProductEvent::ProductDescribed {
                description: "".into(),
            }]);
    }

    #[test]
    fn describe_rejects_too_long() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Describe {
                description: "d".repeat(DESCRIPTION_MAX_LEN + 1),
            })
            .then_expect_error(ProductError::DescriptionTooLong);
    }

    #[test]
    fn reprice() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Reprice { price: eur(999) })
            .then_expect_events(vec![ProductEvent::ProductRepriced { price: eur(999) }]);
    }

    #[test]
    fn reprice_same_is_noop() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Reprice { price: eur(1299) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn reprice_rejects_non_positive_and_currency_change() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Reprice { price: eur(0) })
            .then_expect_error(ProductError::NonPositivePrice(eur(0)));
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Reprice { price: usd(1299) })
            .then_expect_error(ProductError::CurrencyChange {
                from: currency("EUR"),
                to: currency("USD"),
            });
    }

    #[test]
    fn categorise() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Categorise {
                category: "Home".into(),
            })
            .then_expect_events(vec![ProductEvent::ProductCategorised {
                category: "Home".into(),
            }]);
    }

    #[test]
    fn categorise_same_is_noop_and_empty_rejected() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Categorise {
                category: "Kitchen".into(),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Categorise {
                category: " ".into(),
            })
            .then_expect_error(ProductError::EmptyCategory);
    }

    #[test]
    fn discontinue() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::Discontinue { at: t(10) })
            .then_expect_events(vec![discontinued()]);
    }

    #[test]
    fn discontinue_twice_is_noop() {
        F::with(())
            .given(vec![created(), discontinued()])
            .when(ProductCommand::Discontinue { at: t(20) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn changes_after_discontinue_are_rejected() {
        for cmd in [
            ProductCommand::Rename { name: "X".into() },
            ProductCommand::Describe {
                description: "X".into(),
            },
            ProductCommand::Reprice { price: eur(1) },
            ProductCommand::Categorise {
                category: "X".into(),
            },
        ] {
            F::with(())
                .given(vec![created(), discontinued()])
                .when(cmd)
                .then_expect_error(ProductError::Discontinued);
        }
        F::with(())
            .given(vec![created(), discontinued()])
            .when(create_cmd())
            .then_expect_error(ProductError::AlreadyExists);
    }

    #[test]
    fn state_follows_events() {
        let mut p = Product::default();
        for e in [
            created(),
            ProductEvent::ProductRenamed { name: "B".into() },
            discontinued(),
        ] {
            p.apply(e);
        }
        let d = p.details().unwrap();
        assert_eq!(d.name, "B");
        assert!(p.is_discontinued());
    }

    fn image(n: u8, alt: &str) -> ProductImage {
        ProductImage {
            image_id: ImageId::parse(format!("{n:02x}").repeat(32)).unwrap(),
            format: ImageFormat::Png,
            width: 800,
            height: 600,
            alt: alt.into(),
        }
    }

    fn image_added(n: u8) -> ProductEvent {
        ProductEvent::ProductImageAdded {
            image: image(n, "A mug"),
        }
    }

    #[test]
    fn an_image_is_added_with_its_alt_text_trimmed_and_once() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::AddImage {
                image: image(1, "  A mug "),
            })
            .then_expect_events(vec![image_added(1)]);
        F::with(())
            .given(vec![created(), image_added(1)])
            .when(ProductCommand::AddImage {
                image: image(1, "another text"),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_image_needs_a_short_alt_text_and_pixels() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::AddImage {
                image: image(1, &"a".repeat(ALT_MAX_LEN + 1)),
            })
            .then_expect_error(ProductError::AltTooLong);
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::AddImage {
                image: ProductImage {
                    width: 0,
                    ..image(1, "")
                },
            })
            .then_expect_error(ProductError::EmptyImage);
    }

    #[test]
    fn a_product_shows_at_most_max_images() {
        let mut given = vec![created()];
        given.extend((0..MAX_IMAGES as u8).map(image_added));
        F::with(())
            .given(given.clone())
            .when(ProductCommand::AddImage {
                image: image(200, ""),
            })
            .then_expect_error(ProductError::TooManyImages);
        // one taken down makes room
        given.push(ProductEvent::ProductImageRemoved {
            image_id: image(0, "").image_id,
        });
        F::with(())
            .given(given)
            .when(ProductCommand::AddImage {
                image: image(200, ""),
            })
            .then_expect_events(vec![ProductEvent::ProductImageAdded {
                image: image(200, ""),
            }]);
    }

    #[test]
    fn removing_an_unknown_image_is_a_typed_error() {
        F::with(())
            .given(vec![created(), image_added(1)])
            .when(ProductCommand::RemoveImage {
                image_id: image(2, "").image_id,
            })
            .then_expect_error(ProductError::ImageNotFound(image(2, "").image_id));
        F::with(())
            .given(vec![created(), image_added(1), discontinued()])
            .when(ProductCommand::RemoveImage {
                image_id: image(1, "").image_id,
            })
            .then_expect_events(vec![ProductEvent::ProductImageRemoved {
                image_id: image(1, "").image_id,
            }]);
        F::with(())
            .given(vec![created(), discontinued()])
            .when(ProductCommand::AddImage {
                image: image(1, ""),
            })
            .then_expect_error(ProductError::Discontinued);
        F::with(())
            .given_no_previous_events()
            .when(ProductCommand::AddImage {
                image: image(1, ""),
            })
            .then_expect_error(ProductError::NotFound);
    }

    #[test]
    fn images_keep_their_order_and_ids_are_sha256_hex() {
        let mut p = Product::default();
        for e in [
            created(),
            image_added(1),
            image_added(2),
            image_added(3),
            ProductEvent::ProductImageRemoved {
                image_id: image(2, "").image_id,
            },
        ] {
            p.apply(e);
        }
        let ids: Vec<&ImageId> = p
            .details()
            .unwrap()
            .images
            .iter()
            .map(|i| &i.image_id)
            .collect();
        assert_eq!(ids, [&image(1, "").image_id, &image(3, "").image_id]);
        assert!(ImageId::parse("A".repeat(64)).is_err());
        assert!(ImageId::parse("a".repeat(63)).is_err());
        assert!(serde_json::from_value::<ImageId>(serde_json::json!("../etc/passwd")).is_err());
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            created(),
            ProductEvent::ProductRenamed { name: "B".into() },
            ProductEvent::ProductDescribed {
                description: "D".into(),
            },
            ProductEvent::ProductRepriced { price: eur(5) },
            ProductEvent::ProductCategorised {
                category: "C".into(),
            },
            discontinued(),
            ProductEvent::ProductPriceSet { price: usd(1500) },
            ProductEvent::ProductPriceRemoved {
                currency: currency("USD"),
            },
            options_declared(),
            ProductEvent::ProductVariantAdded {
                sku: sku("MUG-1-S"),
                option_values: values(&[("size", "S")]),
            },
            ProductEvent::ProductVariantOf {
                parent: sku("MUG-1"),
                option_values: values(&[("size", "S")]),
            },
            image_added(1),
            ProductEvent::ProductImageRemoved {
                image_id: image(1, "").image_id,
            },
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }

    fn usd_price_set() -> ProductEvent {
        ProductEvent::ProductPriceSet { price: usd(1500) }
    }

    #[test]
    fn set_price_in_another_currency_adds_to_the_price_list() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::SetPrice { price: usd(1500) })
            .then_expect_events(vec![usd_price_set()]);
        F::with(())
            .given(vec![created(), usd_price_set()])
            .when(ProductCommand::SetPrice { price: usd(1450) })
            .then_expect_events(vec![ProductEvent::ProductPriceSet { price: usd(1450) }]);
    }

    #[test]
    fn set_price_in_the_base_currency_reprices() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::SetPrice { price: eur(999) })
            .then_expect_events(vec![ProductEvent::ProductRepriced { price: eur(999) }]);
    }

    #[test]
    fn set_price_unchanged_is_a_noop() {
        F::with(())
            .given(vec![created(), usd_price_set()])
            .when(ProductCommand::SetPrice { price: usd(1500) })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::SetPrice { price: eur(1299) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn set_price_rejects_non_positive_unknown_and_discontinued() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::SetPrice { price: usd(0) })
            .then_expect_error(ProductError::NonPositivePrice(usd(0)));
        F::with(())
            .given_no_previous_events()
            .when(ProductCommand::SetPrice { price: usd(1) })
            .then_expect_error(ProductError::NotFound);
        F::with(())
            .given(vec![created(), discontinued()])
            .when(ProductCommand::SetPrice { price: usd(1) })
            .then_expect_error(ProductError::Discontinued);
    }

    #[test]
    fn remove_price() {
        F::with(())
            .given(vec![created(), usd_price_set()])
            .when(ProductCommand::RemovePrice {
                currency: currency("USD"),
            })
            .then_expect_events(vec![ProductEvent::ProductPriceRemoved {
                currency: currency("USD"),
            }]);
    }

    #[test]
    fn remove_absent_price_is_a_noop_and_the_base_price_stays() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::RemovePrice {
                currency: currency("USD"),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::RemovePrice {
                currency: currency("EUR"),
            })
            .then_expect_error(ProductError::BasePriceRemoval(currency("EUR")));
    }

    fn product_of(events: Vec<ProductEvent>) -> Product {
        let mut product = Product::default();
        for event in events {
            product.apply(event);
        }
        product
    }

    #[test]
    fn a_cart_is_priced_in_its_own_currency() {
        let product = product_of(vec![created(), usd_price_set()]);
        assert_eq!(product.price_for_cart(Some(currency("EUR"))), Ok(eur(1299)));
        assert_eq!(product.price_for_cart(Some(currency("USD"))), Ok(usd(1500)));
        // a cart without a currency takes the base price
        assert_eq!(product.price_for_cart(None), Ok(eur(1299)));
        assert_eq!(
            product.price_for_cart(Some(currency("GBP"))),
            Err(ProductError::NoPriceInCurrency(currency("GBP")))
        );
        let details = product.details().unwrap();
        assert_eq!(details.prices(), vec![eur(1299), usd(1500)]);
    }

    #[test]
    fn a_removed_price_no_longer_prices_a_cart() {
        let product = product_of(vec![
            created(),
            usd_price_set(),
            ProductEvent::ProductPriceRemoved {
                currency: currency("USD"),
            },
        ]);
        assert_eq!(
            product.price_for_cart(Some(currency("USD"))),
            Err(ProductError::NoPriceInCurrency(currency("USD")))
        );
    }

    #[test]
    fn a_discontinued_or_unknown_product_prices_no_cart() {
        assert_eq!(
            product_of(vec![created(), discontinued()]).price_for_cart(None),
            Err(ProductError::Discontinued)
        );
        assert_eq!(
            Product::default().price_for_cart(None),
            Err(ProductError::NotFound)
        );
    }

    #[test]
    fn a_snapshot_without_a_price_list_still_loads() {
        let mut value = serde_json::to_value(product_of(vec![created()])).unwrap();
        value["details"]
            .as_object_mut()
            .unwrap()
            .remove("other_prices");
        let product: Product = serde_json::from_value(value).unwrap();
        assert_eq!(product, product_of(vec![created()]));
    }

    fn option(name: &str, values: &[&str]) -> ProductOption {
        ProductOption {
            name: name.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn values(pairs: &[(&str, &str)]) -> OptionValues {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn options_declared() -> ProductEvent {
        ProductEvent::ProductOptionsDeclared {
            options: vec![
                option("size", &["S", "M"]),
                option("colour", &["red", "blue"]),
            ],
        }
    }

    fn variant_added(s: &str, size: &str, colour: &str) -> ProductEvent {
        ProductEvent::ProductVariantAdded {
            sku: sku(s),
            option_values: values(&[("size", size), ("colour", colour)]),
        }
    }

    fn add_variant(s: &str, pairs: &[(&str, &str)]) -> ProductCommand {
        ProductCommand::AddVariant {
            sku: sku(s),
            option_values: values(pairs),
        }
    }

    #[test]
    fn declare_options_trims_and_validates() {
        F::with(())
            .given(vec![created()])
            .when(ProductCommand::DeclareOptions {
                options: vec![
                    option(" size", &["S", "M "]),
                    option("colour", &["red", "blue"]),
                ],
            })
            .then_expect_events(vec![options_declared()]);
        for (options, detail) in [
            (vec![], "between 1 and 5 options"),
            (
                vec![option("size", &["S"]), option("size", &["M"])],
                "option size is declared twice",
            ),
            (
                vec![option("size", &[])],
                "option size needs between 1 and 50 values",
            ),
            (
                vec![option("size", &["S", "S"])],
                "option size has the value S twice",
            ),
            (
                vec![option(" ", &["S"])],
                "an option's name must not be empty",
            ),
        ] {
            F::with(())
                .given(vec![created()])
                .when(ProductCommand::DeclareOptions { options })
                .then_expect_error(ProductError::InvalidOptions(detail.into()));
        }
    }

    #[test]
    fn options_are_fixed_once_a_variant_exists_and_the_same_options_are_a_noop() {
        F::with(())
            .given(vec![created(), options_declared()])
            .when(ProductCommand::DeclareOptions {
                options: vec![
                    option("size", &["S", "M"]),
                    option("colour", &["red", "blue"]),
                ],
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![
                created(),
                options_declared(),
                variant_added("MUG-1-S-RED", "S", "red"),
            ])
            .when(ProductCommand::DeclareOptions {
                options: vec![option("size", &["S", "M", "L"])],
            })
            .then_expect_error(ProductError::OptionsInUse);
    }

    #[test]
    fn add_variant_takes_one_declared_value_of_every_option() {
        F::with(())
            .given(vec![created(), options_declared()])
            .when(add_variant(
                "MUG-1-S-RED",
                &[("size", "S"), ("colour", "red")],
            ))
            .then_expect_events(vec![variant_added("MUG-1-S-RED", "S", "red")]);
        for (pairs, detail) in [
            (vec![("size", "S")], "no value of colour"),
            (
                vec![("size", "XL"), ("colour", "red")],
                "XL is not a value of size",
            ),
            (
                vec![("size", "S"), ("colour", "red"), ("fit", "slim")],
                "the product has no option fit",
            ),
        ] {
            F::with(())
                .given(vec![created(), options_declared()])
                .when(add_variant("MUG-1-X", &pairs))
                .then_expect_error(ProductError::InvalidOptionValues(detail.into()));
        }
    }

    #[test]
    fn a_combination_and_a_sku_belong_to_one_variant() {
        let given = vec![
            created(),
            options_declared(),
            variant_added("MUG-1-S-RED", "S", "red"),
        ];
        F::with(())
            .given(given.clone())
            .when(add_variant(
                "MUG-1-OTHER",
                &[("size", "S"), ("colour", "red")],
            ))
            .then_expect_error(ProductError::DuplicateVariant(sku("MUG-1-S-RED")));
        F::with(())
            .given(given.clone())
            .when(add_variant(
                "MUG-1-S-RED",
                &[("size", "M"), ("colour", "red")],
            ))
            .then_expect_error(ProductError::VariantSkuTaken(sku("MUG-1-S-RED")));
        // the same variant again (a retry) changes nothing
        F::with(())
            .given(given)
            .when(add_variant(
                "MUG-1-S-RED",
                &[("size", "S"), ("colour", "red")],
            ))
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created(), options_declared()])
            .when(add_variant("MUG-1", &[("size", "S"), ("colour", "red")]))
            .then_expect_error(ProductError::VariantSkuTaken(sku("MUG-1")));
    }

    #[test]
    fn variants_need_options_and_a_variant_has_none_of_its_own() {
        F::with(())
            .given(vec![created()])
            .when(add_variant("MUG-1-S", &[("size", "S")]))
            .then_expect_error(ProductError::NoOptions);
        let variant = vec![
            created(),
            ProductEvent::ProductVariantOf {
                parent: sku("CUP-1"),
                option_values: values(&[("size", "S")]),
            },
        ];
        F::with(())
            .given(variant.clone())
            .when(ProductCommand::DeclareOptions {
                options: vec![option("size", &["S"])],
            })
            .then_expect_error(ProductError::VariantOfVariant);
        F::with(())
            .given(variant)
            .when(add_variant("MUG-1-S", &[("size", "S")]))
            .then_expect_error(ProductError::VariantOfVariant);
    }

    fn create_variant(prices: Vec<Money>) -> ProductCommand {
        ProductCommand::CreateVariant {
            sku: sku("MUG-1-S-RED"),
            parent: sku("MUG-1"),
            option_values: values(&[("size", "S"), ("colour", "red")]),
            name: "Mug (S / red)".into(),
            description: "A mug".into(),
            category: "Kitchen".into(),
            prices,
            created_at: t(5),
        }
    }

    fn variant_created() -> Vec<ProductEvent> {
        vec![
            ProductEvent::ProductCreated {
                sku: sku("MUG-1-S-RED"),
                name: "Mug (S / red)".into(),
                description: "A mug".into(),
                category: "Kitchen".into(),
                price: eur(1299),
                created_at: t(5),
            },
            ProductEvent::ProductVariantOf {
                parent: sku("MUG-1"),
                option_values: values(&[("size", "S"), ("colour", "red")]),
            },
        ]
    }

    #[test]
    fn a_variant_is_a_product_with_its_own_price_list() {
        let mut expected = variant_created();
        expected.push(ProductEvent::ProductPriceSet { price: usd(1500) });
        F::with(())
            .given_no_previous_events()
            .when(create_variant(vec![eur(1299), usd(1500), eur(1)]))
            .then_expect_events(expected);
        F::with(())
            .given_no_previous_events()
            .when(create_variant(vec![]))
            .then_expect_error(ProductError::NoBasePrice);
        F::with(())
            .given_no_previous_events()
            .when(create_variant(vec![eur(1299), usd(0)]))
            .then_expect_error(ProductError::NonPositivePrice(usd(0)));
    }

    #[test]
    fn creating_the_same_variant_again_is_a_noop_and_another_product_is_taken() {
        F::with(())
            .given(variant_created())
            .when(create_variant(vec![eur(1299)]))
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(create_variant(vec![eur(1299)]))
            .then_expect_error(ProductError::AlreadyExists);
    }

    #[test]
    fn a_variant_is_sold_like_any_product() {
        let product = product_of(variant_created());
        assert_eq!(product.price_for_cart(None), Ok(eur(1299)));
        let details = product.details().unwrap();
        assert_eq!(
            details.variant_of,
            Some((sku("MUG-1"), values(&[("size", "S"), ("colour", "red")])))
        );
    }
}

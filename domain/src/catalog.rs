//! The catalog's structure (aggregate type `catalog`, one stream, [`CATALOG_STREAM`]): the
//! category tree and the featured products list.
//!
//! Categories are a tree of slugs: created under a parent (or as a root), renamed, moved (never
//! under themselves or their own descendants: one stream holds the whole tree, so that check is
//! decided on the whole tree). A product is in the category whose slug its `category` is.
//! The featured products are an ordered list of SKUs that staff set as a whole.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::Sku;

/// The id of the one catalog stream.
pub const CATALOG_STREAM: &str = "catalog";
/// Longest slug, in characters.
pub const SLUG_MAX_LEN: usize = 64;
/// Longest category name, in characters.
pub const CATEGORY_NAME_MAX_LEN: usize = 100;
/// Most featured products.
pub const FEATURED_MAX: usize = 50;

/// Commands accepted by [`Catalog`].
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogCommand {
    /// A new category under `parent` (`None`: a root).
    CreateCategory {
        slug: String,
        name: String,
        parent: Option<String>,
    },
    RenameCategory {
        slug: String,
        name: String,
    },
    /// Moves a category (with its subtree) under `parent` (`None`: to the roots).
    MoveCategory {
        slug: String,
        parent: Option<String>,
    },
    /// The featured products, in order (replaces the list; empty clears it).
    SetFeaturedProducts {
        skus: Vec<Sku>,
    },
}

/// Events of the catalog stream (wire contract, version "1").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum CatalogEvent {
    CategoryCreated {
        slug: String,
        name: String,
        parent: Option<String>,
    },
    CategoryRenamed {
        slug: String,
        name: String,
    },
    CategoryMoved {
        slug: String,
        parent: Option<String>,
    },
    FeaturedProductsSet {
        skus: Vec<Sku>,
    },
}

/// Every [`CatalogEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "CategoryCreated",
    "CategoryRenamed",
    "CategoryMoved",
    "FeaturedProductsSet",
];

impl DomainEvent for CatalogEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CategoryCreated { .. } => "CategoryCreated",
            Self::CategoryRenamed { .. } => "CategoryRenamed",
            Self::CategoryMoved { .. } => "CategoryMoved",
            Self::FeaturedProductsSet { .. } => "FeaturedProductsSet",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why a catalog command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "slug: 1 to {max} of a-z and 0-9 in words joined by single hyphens, got {0:?}",
        max = SLUG_MAX_LEN
    )]
    InvalidSlug(String),
    #[error("name: must not be empty")]
    EmptyName,
    #[error("name: must be at most {max} characters", max = CATEGORY_NAME_MAX_LEN)]
    NameTooLong,
    #[error("category {0} already exists")]
    CategoryExists(String),
    #[error("no category {0}")]
    UnknownCategory(String),
    #[error("parent: no category {0}")]
    UnknownParent(String),
    #[error("moving {slug} under {parent} would make a cycle: {parent} is {slug} or inside it")]
    Cycle { slug: String, parent: String },
    #[error("skus: at most {max} featured products", max = FEATURED_MAX)]
    TooManyFeatured,
    #[error("skus: {0} is listed twice")]
    FeaturedTwice(Sku),
}

/// A category as the tree holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub parent: Option<String>,
}

/// The catalog's structure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    categories: BTreeMap<String, Category>,
    featured: Vec<Sku>,
}

fn valid_slug(slug: &str) -> Result<String, CatalogError> {
    let words_ok = slug.split('-').all(|word| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if words_ok && slug.len() <= SLUG_MAX_LEN {
        Ok(slug.to_owned())
    } else {
        Err(CatalogError::InvalidSlug(slug.to_owned()))
    }
}

fn valid_name(name: &str) -> Result<String, CatalogError> {
    let name = name.trim();
    if name.is_empty() {
        Err(CatalogError::EmptyName)
    } else if name.chars().count() > CATEGORY_NAME_MAX_LEN {
        Err(CatalogError::NameTooLong)
    } else {
        Ok(name.to_owned())
    }
}

impl Catalog {
    pub fn category(&self, slug: &str) -> Option<&Category> {
        self.categories.get(slug)
    }

    pub fn categories(&self) -> &BTreeMap<String, Category> {
        &self.categories
    }

    pub fn featured(&self) -> &[Sku] {
        &self.featured
    }

    /// The slugs from the root down to `slug` (empty for an unknown one).
    pub fn path(&self, slug: &str) -> Vec<String> {
        let mut path = Vec::new();
        let mut next = Some(slug.to_owned());
        while let Some(slug) = next {
            let Some(category) = self.categories.get(&slug) else {
                break;
            };
            // the tree never has a cycle; the bound only keeps a corrupt one from looping
            if path.len() > self.categories.len() {
                break;
            }
            next = category.parent.clone();
            path.push(slug);
        }
        path.reverse();
        path
    }

    fn existing_parent(&self, parent: Option<String>) -> Result<Option<String>, CatalogError> {
        match parent {
            None => Ok(None),
            Some(parent) if self.categories.contains_key(&parent) => Ok(Some(parent)),
            Some(parent) => Err(CatalogError::UnknownParent(parent)),
        }
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        use CatalogCommand as C;
        use CatalogEvent as E;
        let event = match command {
            C::CreateCategory { slug, name, parent } => {
                let slug = valid_slug(&slug)?;
                let name = valid_name(&name)?;
                match self.categories.get(&slug) {
                    // a retry of the same creation changes nothing
                    Some(existing) if existing.name == name && existing.parent == parent => None,
                    Some(_) => return Err(CatalogError::CategoryExists(slug)),
                    None => {
                        let parent = self.existing_parent(parent)?;
                        Some(E::CategoryCreated { slug, name, parent })
                    }
                }
            }
            C::RenameCategory { slug, name } => {
                let name = valid_name(&name)?;
                let category = self
                    .categories
                    .get(&slug)
                    .ok_or_else(|| CatalogError::UnknownCategory(slug.clone()))?;
                (category.name != name).then_some(E::CategoryRenamed { slug, name })
            }
            C::MoveCategory { slug, parent } => {
                let category = self
                    .categories
                    .get(&slug)
                    .ok_or_else(|| CatalogError::UnknownCategory(slug.clone()))?;
                let parent = self.existing_parent(parent)?;
                if let Some(parent) = &parent {
                    if self.path(parent).contains(&slug) {
                        return Err(CatalogError::Cycle {
                            slug,
                            parent: parent.clone(),
                        });
                    }
                }
                (category.parent != parent).then_some(E::CategoryMoved { slug, parent })
            }
            C::SetFeaturedProducts { skus } => {
                if skus.len() > FEATURED_MAX {
                    return Err(CatalogError::TooManyFeatured);
                }
                for (i, sku) in skus.iter().enumerate() {
                    if skus[..i].contains(sku) {
                        return Err(CatalogError::FeaturedTwice(sku.clone()));
                    }
                }
                (skus != self.featured).then_some(E::FeaturedProductsSet { skus })
            }
        };
        Ok(event.into_iter().collect())
    }
}

impl Aggregate for Catalog {
    const TYPE: &'static str = "catalog";
    type Command = CatalogCommand;
    type Event = CatalogEvent;
    type Error = CatalogError;
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
        use CatalogEvent as E;
        match event {
            E::CategoryCreated { slug, name, parent } => {
                self.categories.insert(slug, Category { name, parent });
            }
            E::CategoryRenamed { slug, name } => {
                if let Some(category) = self.categories.get_mut(&slug) {
                    category.name = name;
                }
            }
            E::CategoryMoved { slug, parent } => {
                if let Some(category) = self.categories.get_mut(&slug) {
                    category.parent = parent;
                }
            }
            E::FeaturedProductsSet { skus } => self.featured = skus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;
    use CatalogCommand as C;
    use CatalogEvent as E;

    type F = TestFramework<Catalog>;

    fn created(slug: &str, parent: Option<&str>) -> E {
        E::CategoryCreated {
            slug: slug.into(),
            name: slug.to_uppercase(),
            parent: parent.map(str::to_owned),
        }
    }

    /// home > kitchen > mugs, and garden
    fn tree() -> Vec<E> {
        vec![
            created("home", None),
            created("kitchen", Some("home")),
            created("mugs", Some("kitchen")),
            created("garden", None),
        ]
    }

    fn create(slug: &str, name: &str, parent: Option<&str>) -> C {
        C::CreateCategory {
            slug: slug.into(),
            name: name.into(),
            parent: parent.map(str::to_owned),
        }
    }

    fn move_to(slug: &str, parent: Option<&str>) -> C {
        C::MoveCategory {
            slug: slug.into(),
            parent: parent.map(str::to_owned),
        }
    }

    #[test]
    fn create_a_root_and_a_child() {
        F::with(())
            .given_no_previous_events()
            .when(create("home", " HOME ", None))
            .then_expect_events(vec![created("home", None)]);
        F::with(())
            .given(vec![created("home", None)])
            .when(create("kitchen", "KITCHEN", Some("home")))
            .then_expect_events(vec![created("kitchen", Some("home"))]);
    }

    #[test]
    fn create_rejects_bad_slugs_names_unknown_parents_and_taken_slugs() {
        for slug in [
            "",
            "Home",
            "home--x",
            "-home",
            "home-",
            "ho me",
            &"a".repeat(65),
        ] {
            F::with(())
                .given_no_previous_events()
                .when(create(slug, "Home", None))
                .then_expect_error(CatalogError::InvalidSlug(slug.into()));
        }
        F::with(())
            .given_no_previous_events()
            .when(create("home", " ", None))
            .then_expect_error(CatalogError::EmptyName);
        F::with(())
            .given_no_previous_events()
            .when(create("home", &"n".repeat(101), None))
            .then_expect_error(CatalogError::NameTooLong);
        F::with(())
            .given_no_previous_events()
            .when(create("kitchen", "Kitchen", Some("home")))
            .then_expect_error(CatalogError::UnknownParent("home".into()));
        F::with(())
            .given(tree())
            .when(create("home", "Other", None))
            .then_expect_error(CatalogError::CategoryExists("home".into()));
        // the same creation again (a retry) changes nothing
        F::with(())
            .given(tree())
            .when(create("kitchen", "KITCHEN", Some("home")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn rename() {
        F::with(())
            .given(tree())
            .when(C::RenameCategory {
                slug: "mugs".into(),
                name: "Cups & mugs".into(),
            })
            .then_expect_events(vec![E::CategoryRenamed {
                slug: "mugs".into(),
                name: "Cups & mugs".into(),
            }]);
        F::with(())
            .given(tree())
            .when(C::RenameCategory {
                slug: "mugs".into(),
                name: "MUGS".into(),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(tree())
            .when(C::RenameCategory {
                slug: "nope".into(),
                name: "X".into(),
            })
            .then_expect_error(CatalogError::UnknownCategory("nope".into()));
    }

    #[test]
    fn move_a_subtree() {
        F::with(())
            .given(tree())
            .when(move_to("kitchen", Some("garden")))
            .then_expect_events(vec![E::CategoryMoved {
                slug: "kitchen".into(),
                parent: Some("garden".into()),
            }]);
        F::with(())
            .given(tree())
            .when(move_to("mugs", None))
            .then_expect_events(vec![E::CategoryMoved {
                slug: "mugs".into(),
                parent: None,
            }]);
        F::with(())
            .given(tree())
            .when(move_to("mugs", Some("kitchen")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_move_never_makes_a_cycle() {
        for (slug, parent) in [
            ("home", "mugs"),
            ("home", "kitchen"),
            ("kitchen", "kitchen"),
        ] {
            F::with(())
                .given(tree())
                .when(move_to(slug, Some(parent)))
                .then_expect_error(CatalogError::Cycle {
                    slug: slug.into(),
                    parent: parent.into(),
                });
        }
        F::with(())
            .given(tree())
            .when(move_to("kitchen", Some("nope")))
            .then_expect_error(CatalogError::UnknownParent("nope".into()));
        F::with(())
            .given(tree())
            .when(move_to("nope", None))
            .then_expect_error(CatalogError::UnknownCategory("nope".into()));
    }

    #[test]
    fn paths_follow_moves() {
        let mut catalog = Catalog::default();
        for event in tree() {
            catalog.apply(event);
        }
        assert_eq!(catalog.path("mugs"), ["home", "kitchen", "mugs"]);
        catalog.apply(E::CategoryMoved {
            slug: "kitchen".into(),
            parent: Some("garden".into()),
        });
        assert_eq!(catalog.path("mugs"), ["garden", "kitchen", "mugs"]);
        assert!(catalog.path("nope").is_empty());
    }

    #[test]
    fn featured_products_are_an_ordered_list_without_repeats() {
        let list = vec![sku("MUG-1"), sku("CUP-1")];
        F::with(())
            .given_no_previous_events()
            .when(C::SetFeaturedProducts { skus: list.clone() })
            .then_expect_events(vec![E::FeaturedProductsSet { skus: list.clone() }]);
        F::with(())
            .given(vec![E::FeaturedProductsSet { skus: list.clone() }])
            .when(C::SetFeaturedProducts { skus: list.clone() })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![E::FeaturedProductsSet { skus: list.clone() }])
            .when(C::SetFeaturedProducts { skus: vec![] })
            .then_expect_events(vec![E::FeaturedProductsSet { skus: vec![] }]);
        F::with(())
            .given_no_previous_events()
            .when(C::SetFeaturedProducts {
                skus: vec![sku("MUG-1"), sku("CUP-1"), sku("MUG-1")],
            })
            .then_expect_error(CatalogError::FeaturedTwice(sku("MUG-1")));
        F::with(())
            .given_no_previous_events()
            .when(C::SetFeaturedProducts {
                skus: (0..=FEATURED_MAX).map(|n| sku(&format!("S-{n}"))).collect(),
            })
            .then_expect_error(CatalogError::TooManyFeatured);
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            created("home", None),
            E::CategoryRenamed {
                slug: "home".into(),
                name: "Home".into(),
            },
            E::CategoryMoved {
                slug: "home".into(),
                parent: None,
            },
            E::FeaturedProductsSet {
                skus: vec![sku("MUG-1")],
            },
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}

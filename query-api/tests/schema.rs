//! The served schema is the committed one (`schemas/graphql/schema.graphql`), and it changes
//! only by adding: a removed type, field or argument, or a changed field type, is a breaking
//! change for clients and must be made deliberately.
//!
//! After an intended change: `UPDATE_SCHEMAS=1 cargo test -p query-api --test schema` (add
//! `ALLOW_BREAKING_SCHEMA=1` for a breaking one, and say so in the change log).

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/graphql/schema.graphql")
}

/// `Type.field` → its type and arguments (`name: Type`), and every enum value as `Enum.VALUE`.
fn surface(sdl: &str) -> BTreeMap<String, String> {
    if sdl.trim().is_empty() {
        return BTreeMap::new();
    }
    let document = parse_schema(sdl).expect("the SDL parses");
    let mut surface = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let type_name = definition.node.name.node.to_string();
        match &definition.node.kind {
            TypeKind::Object(object) => {
                for field in &object.fields {
                    let mut arguments: Vec<String> = field
                        .node
                        .arguments
                        .iter()
                        .map(|a| format!("{}: {}", a.node.name.node, a.node.ty.node))
                        .collect();
                    arguments.sort();
                    surface.insert(
                        format!("{type_name}.{}", field.node.name.node),
                        format!("{} ({})", field.node.ty.node, arguments.join(", ")),
                    );
                }
            }
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    surface.insert(
                        format!("{type_name}.{}", field.node.name.node),
                        field.node.ty.node.to_string(),
                    );
                }
            }
            TypeKind::Enum(enumeration) => {
                for value in &enumeration.values {
                    surface.insert(
                        format!("{type_name}.{}", value.node.value.node),
                        "enum value".into(),
                    );
                }
            }
            _ => {
                surface.insert(type_name, "type".into());
            }
        }
    }
    surface
}

/// `name: Type` pairs of a field's shape `Type (a: A, b: B)`.
fn arguments(shape: &str) -> BTreeMap<&str, &str> {
    let arguments = shape.split_once(" (").map_or("", |(_, a)| a);
    arguments
        .trim_end_matches(')')
        .split(", ")
        .filter_map(|a| a.split_once(": "))
        .collect()
}

/// What a client of `old` would lose with `new`: removed types, fields, arguments and enum
/// values; a field whose type changed; an argument whose type changed other than by becoming
/// nullable; a new required argument.
fn breaking_changes(old: &str, new: &str) -> Vec<String> {
    let new = surface(new);
    surface(old)
        .into_iter()
        .filter_map(|(name, shape)| {
            let Some(now) = new.get(&name) else {
                return Some(format!("{name} was removed"));
            };
            if now == &shape || shape == "enum value" {
                return None;
            }
            let old_type = shape.split(" (").next().unwrap_or("");
            let new_type = now.split(" (").next().unwrap_or("");
            let (old_args, new_args) = (arguments(&shape), arguments(now));
            let kept = old_args.iter().all(|(arg, ty)| {
                new_args
                    .get(arg)
                    .is_some_and(|now| now == ty || Some(*now) == ty.strip_suffix('!'))
            });
            let added_required = new_args
                .iter()
                .any(|(arg, ty)| !old_args.contains_key(arg) && ty.ends_with('!'));
            (old_type != new_type || !kept || added_required)
                .then(|| format!("{name} changed from `{shape}` to `{now}`"))
        })
        .collect()
}

#[test]
fn the_served_schema_is_the_committed_one() {
    let served = query_api::sdl();
    let path = committed_path();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        let breaking = breaking_changes(&committed, &served);
        assert!(
            breaking.is_empty() || std::env::var_os("ALLOW_BREAKING_SCHEMA").is_some(),
            "breaking changes (set ALLOW_BREAKING_SCHEMA=1 if deliberate):\n{}",
            breaking.join("\n")
        );
        std::fs::write(&path, &served).expect("write the schema");
        return;
    }
    assert!(
        served == committed,
        "the served GraphQL schema differs from {}; if the change is intended, run \
         `UPDATE_SCHEMAS=1 cargo test -p query-api --test schema`.\nBreaking changes: {:?}",
        path.display(),
        breaking_changes(&committed, &served)
    );
}

#[test]
fn the_compatibility_check_catches_removals_and_type_changes_but_not_additions() {
    let old = "type Query { a(x: Int): Int  b: String! }\nenum E { X Y }";
    assert!(breaking_changes(old, old).is_empty());
    let added = "type Query { a(x: Int, y: Int): Int  b: String!  c: Int }\nenum E { X Y Z }";
    assert!(
        breaking_changes(old, added).is_empty(),
        "{:?}",
        breaking_changes(old, added)
    );
    let removed = "type Query { a(x: Int): Int }\nenum E { X }";
    assert_eq!(breaking_changes(old, removed).len(), 2);
    let retyped = "type Query { a(x: Int): String  b: String! }\nenum E { X Y }";
    assert_eq!(breaking_changes(old, retyped).len(), 1);
    let required_arg = "type Query { a(x: Int, y: Int!): Int  b: String! }\nenum E { X Y }";
    assert_eq!(breaking_changes(old, required_arg).len(), 1);
    let strict = "type Query { a(x: Int!): Int  b: String! }\nenum E { X Y }";
    assert_eq!(
        breaking_changes(old, strict).len(),
        1,
        "an argument made required"
    );
    assert!(
        breaking_changes(strict, old).is_empty(),
        "an argument made optional"
    );
}

//! The stored-event contract: committed JSON Schemas match the code, and every golden fixture of
//! every version ever stored still loads.
//!
//! `UPDATE_SCHEMAS=1 cargo test -p schemas` rewrites the schema files after a deliberate change
//! (and review the diff: a removed or renamed field breaks stored events unless upcast).

use std::path::{Path, PathBuf};

use schemas::{decode, event_schema, event_types, AGGREGATE_TYPES};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn committed_event_schemas_match_the_code() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for aggregate in AGGREGATE_TYPES {
        let generated = event_schema(aggregate).expect("schema");
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        let path = root().join("events").join(format!("{aggregate}.json"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != text {
            if update {
                std::fs::write(&path, &text).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "event schemas differ from the code: {stale:?}; if the change is deliberate, run \
         UPDATE_SCHEMAS=1 cargo test -p schemas and add upcasters for changed events"
    );
}

fn fixtures() -> Vec<(PathBuf, Value)> {
    let mut found = Vec::new();
    for aggregate in AGGREGATE_TYPES {
        let dir = root().join("fixtures").join(aggregate);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let fixture: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path, fixture));
        }
    }
    found
}

#[test]
fn every_golden_fixture_still_loads() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 40,
        "expected a fixture per event type, found {}",
        fixtures.len()
    );
    for (path, fixture) in fixtures {
        let text = |key: &str| {
            fixture[key]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
                .to_owned()
        };
        let (aggregate, event_type, version) = (
            text("aggregate_type"),
            text("event_type"),
            text("event_version"),
        );
        let expected_name = format!("{event_type}.v{version}.json");
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), expected_name);
        // as the domain wrote it: personal fields are not redacted here (see `personal`)
        let event = schemas::decode_plain(
            &aggregate,
            &event_type,
            &version,
            fixture["payload"].clone(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(event.event_type(), event_type, "{}", path.display());
        if version == domain::EVENT_VERSION {
            // a current-version fixture is exactly what the code writes today
            assert_eq!(
                event.to_payload().unwrap(),
                fixture["payload"],
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn every_event_type_has_a_fixture_of_its_current_version() {
    let fixtures = fixtures();
    for aggregate in AGGREGATE_TYPES {
        for event_type in event_types(aggregate).unwrap() {
            let name = format!("{event_type}.v{}.json", domain::EVENT_VERSION);
            assert!(
                fixtures
                    .iter()
                    .any(|(path, _)| path.ends_with(Path::new(aggregate).join(&name))),
                "no fixture {aggregate}/{name}: add one when you add an event or a version"
            );
        }
    }
}

#[test]
fn a_payload_of_the_wrong_shape_is_a_typed_error() {
    let error = decode(
        "product",
        "ProductRenamed",
        "1",
        serde_json::json!({"ProductRenamed": {}}),
    )
    .unwrap_err();
    assert!(
        matches!(error, schemas::DecodeError::Shape { .. }),
        "{error}"
    );
    assert_eq!(
        decode("basket", "X", "1", serde_json::json!({})),
        Err(schemas::DecodeError::UnknownAggregate("basket".into()))
    );
}

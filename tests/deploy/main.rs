//! The deploy files are code: they are parsed here and checked against the real binary. Every
//! role the binary has is deployed (Kubernetes and compose); ports, probe paths and gateway
//! routes answer on a running `shop serve`; every metric a dashboard or an alert uses is one the
//! running process exports after real traffic; every environment variable the files set is one
//! the binary reads; the Dockerfile builds every workspace crate in its dependency layer and
//! runs as a non-root user with a health check, and deploy/docker/Containerfile (the image
//! scripts/image.sh builds without a registry) is its runtime stage. The image itself is built and
//! run by tests/container; Kubernetes and compose files are checked, not deployed (see README).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

#[path = "../support/mod.rs"]
mod support;

use support::{server_url, E2eDatabase, ShopProcess, SHOP};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let mut value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{path:?} is not valid YAML: {e}"));
            // `<<: *anchor` merge keys, as compose applies them
            value.apply_merge().unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The Kubernetes base: every object of every resource the kustomization lists.
fn k8s_base() -> Vec<Value> {
    let base = root().join("deploy/k8s/base");
    let kustomization = &yaml_documents(&base.join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|file| yaml_documents(&base.join(file.as_str().unwrap())))
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The serving roles: the subcommands `shop --help` describes as "Run the ...".
fn roles() -> Vec<String> {
    let help = Command::new(SHOP).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let roles: Vec<String> = help
        .lines()
        .map(str::trim)
        .filter_map(|line| line.split_once(char::is_whitespace))
        .filter(|(_, about)| about.trim_start().starts_with("Run the"))
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(roles.len() >= 4, "roles found in `shop --help`: {roles:?}");
    roles
}

/// Every environment variable the binary reads through its flags (`[env: NAME=]` in `--help`).
fn env_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for command in ["serve", "migrate", "probe"] {
        let help = Command::new(SHOP)
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for part in help.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            names.insert(name);
        }
    }
    // read before the flags are parsed (the log set-up), documented in the README
    names.insert("RUST_LOG".into());
    names.insert("SHOP_LOG_FORMAT".into());
    names.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into());
    names.insert("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into());
    names.insert("OTEL_SERVICE_NAME".into());
    names
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn every_role_is_deployed_with_probes_on_its_ports_and_only_known_settings() {
    let objects = k8s_base();
    let deployments = of_kind(&objects, "Deployment");
    let config = &of_kind(&objects, "ConfigMap")[0]["data"];
    let known = env_names();
    for key in config.as_object().unwrap().keys() {
        assert!(
            known.contains(key),
            "the ConfigMap sets {key}, which shop does not read"
        );
    }
    let ops_port = port_of(config["SHOP_OPS_ADDR"].as_str().unwrap());
    let api_ports = BTreeMap::from([
        (
            "command-api",
            port_of(config["SHOP_COMMAND_API_ADDR"].as_str().unwrap()),
        ),
        (
            "query-api",
            port_of(config["SHOP_QUERY_API_ADDR"].as_str().unwrap()),
        ),
    ]);
    for role in roles() {
        let deployment = deployments
            .iter()
            .find(|d| d["spec"]["template"]["spec"]["containers"][0]["args"] == json!([role]))
            .unwrap_or_else(|| panic!("no Deployment runs `shop {role}`"));
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let ports: BTreeMap<&str, u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports.get("ops"),
            Some(&u64::from(ops_port)),
            "{role}: ops port"
        );
        if let Some(api) = api_ports.get(role.as_str()) {
            assert_eq!(
                ports.get("http"),
                Some(&u64::from(*api)),
                "{role}: API port"
            );
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &container[probe]["httpGet"];
            let port = get["port"].as_str().unwrap();
            assert!(
                ports.contains_key(port),
                "{role}: {probe} on unknown port {port}"
            );
        }
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"],
            "/health/ready"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"],
            "/health/live"
        );
        assert!(
            container["resources"]["requests"].is_object(),
            "{role}: resources"
        );
        let env_from = container["envFrom"].to_string();
        assert!(env_from.contains("shop-config") && env_from.contains("shop-secrets"));
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{role}");
        // a disruption budget per role
        assert!(
            of_kind(&objects, "PodDisruptionBudget").iter().any(|p| {
                p["spec"]["selector"]["matchLabels"]
                    == deployment["spec"]["selector"]["matchLabels"]
            }),
            "{role}: no PodDisruptionBudget"
        );
    }
    // the APIs scale, and their Services point at named container ports
    let autoscaled: BTreeSet<&str> = of_kind(&objects, "HorizontalPodAutoscaler")
        .iter()
        .map(|h| h["spec"]["scaleTargetRef"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(autoscaled, BTreeSet::from(["command-api", "query-api"]));
    for service in of_kind(&objects, "Service") {
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    }
    // the migration runs before the roles
    let job = &of_kind(&objects, "Job")[0];
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["migrate"])
    );
    // the overlays build on the base, ArgoCD deploys one of them
    for overlay in ["dev", "prod"] {
        let kustomization = &yaml_documents(
            &root().join(format!("deploy/k8s/overlays/{overlay}/kustomization.yaml")),
        )[0];
        assert_eq!(kustomization["resources"], json!(["../../base"]));
    }
    let argocd = &yaml_documents(&root().join("deploy/argocd/application.yaml"))[0];
    let path = argocd["spec"]["source"]["path"].as_str().unwrap();
    assert!(
        root().join(path).join("kustomization.yaml").exists(),
        "{path}"
    );
}

#[test]
fn compose_runs_every_role_after_its_dependencies_are_healthy() {
    let compose = &yaml_documents(&root().join("deploy/compose/docker-compose.yml"))[0];
    let services = compose["services"].as_object().unwrap();
    let known = env_names();
    for role in roles() {
        let service = &services
            .get(&role)
            .unwrap_or_else(|| panic!("compose has no `{role}` service"));
        assert_eq!(service["command"], json!([role]));
        assert_eq!(
            service["depends_on"]["migrate"]["condition"], "service_completed_successfully",
            "{role}"
        );
        assert_eq!(
            service["depends_on"]["postgres"]["condition"],
            "service_healthy"
        );
        for key in service["environment"].as_object().unwrap().keys() {
            assert!(
                known.contains(key),
                "compose sets {key} for {role}; shop does not read it"
            );
        }
    }
    for infrastructure in [
        "postgres",
        "redis",
        "kafka",
        "prometheus",
        "grafana",
        "jaeger",
    ] {
        assert!(services.contains_key(infrastructure), "{infrastructure}");
    }
    for healthy in ["postgres", "redis", "kafka"] {
        assert!(
            services[healthy]["healthcheck"]["test"].is_array(),
            "{healthy}"
        );
    }
    // Prometheus scrapes every role's operations port
    let prometheus = &yaml_documents(&root().join("deploy/prometheus/prometheus.yml"))[0];
    let targets: BTreeSet<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = roles().iter().map(|r| format!("{r}:9090")).collect();
    assert_eq!(targets, expected);
}

#[test]
fn the_dockerfile_caches_every_crate_and_runs_unprivileged_with_a_health_check() {
    let dockerfile = read("deploy/docker/Dockerfile");
    let manifest: toml_like::Members = toml_like::members(&read("Cargo.toml"));
    for member in manifest {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/")),
            "the dependency layer misses {member}/Cargo.toml"
        );
        assert!(dockerfile.contains(member.as_str()), "{member}");
    }
    assert!(dockerfile.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(dockerfile.contains("USER 10001"), "non-root");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"probe\""));
    assert!(dockerfile.contains("EXPOSE 8080 8081 9090"));
    let objects = k8s_base();
    let config = &of_kind(&objects, "ConfigMap")[0]["data"];
    for addr in [
        "SHOP_COMMAND_API_ADDR",
        "SHOP_QUERY_API_ADDR",
        "SHOP_OPS_ADDR",
    ] {
        let port = port_of(config[addr].as_str().unwrap());
        assert!(
            dockerfile.contains(&port.to_string()),
            "{addr} port {port} not exposed"
        );
    }
}

/// The runtime stage of a Dockerfile: its lines from `FROM ... AS runtime` on, without comments.
fn runtime_stage(file: &str) -> Vec<&str> {
    let lines: Vec<&str> = file.lines().filter(|l| !l.starts_with('#')).collect();
    let from = lines
        .iter()
        .position(|l| l.starts_with("FROM ") && l.ends_with(" AS runtime"))
        .expect("a stage `AS runtime`");
    lines[from..].to_vec()
}

#[test]
fn the_containerfile_is_the_dockerfiles_runtime_stage_over_the_local_base() {
    let dockerfile = read("deploy/docker/Dockerfile");
    let containerfile = read("deploy/docker/Containerfile");
    let registry = runtime_stage(&dockerfile);
    let local = runtime_stage(&containerfile);
    assert_eq!(
        registry.len(),
        local.len(),
        "the runtime stages differ:\n{registry:#?}\n{local:#?}"
    );
    for (registry_line, local_line) in registry.iter().zip(&local) {
        match *registry_line {
            line if line.starts_with("FROM ") => {
                assert_eq!(*local_line, "FROM ${BASE_IMAGE} AS runtime")
            }
            "COPY --from=build /shop /usr/local/bin/shop" => {
                assert_eq!(*local_line, "COPY shop /usr/local/bin/shop")
            }
            line => assert_eq!(*local_line, line, "the runtime stages differ"),
        }
    }
    // one stage only: nothing is compiled in the local image, and its base is the one
    // scripts/image.sh makes with debootstrap
    assert_eq!(containerfile.matches("\nFROM ").count(), 1);
    let base = "BASE_IMAGE=localhost/shop-base:bookworm";
    assert!(containerfile.contains(&format!("ARG {base}\n")));
    assert!(read("scripts/image.sh").contains(&format!("\n{base}\n")));
}

/// The workspace members, read from the root manifest without a TOML parser.
mod toml_like {
    pub type Members = Vec<String>;

    pub fn members(manifest: &str) -> Members {
        let start = manifest.find("members = [").expect("workspace members");
        let list = &manifest[start..manifest[start..].find(']').unwrap() + start];
        list.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }
}

/// A `shop serve` with an operations listener; killed on drop, then its broker stopped and its
/// database dropped (fields drop in this order).
struct Serve {
    process: ShopProcess,
    // the relay inside `shop serve` publishes to it
    _broker: relay::testing::Broker,
    _database: E2eDatabase,
}

impl Serve {
    fn url(&self, listener: &str) -> String {
        self.process.url(listener)
    }
}

async fn start_serve() -> Serve {
    let database = E2eDatabase::seeded();
    let admin = sqlx::PgPool::connect(&server_url()).await.unwrap();
    let broker = relay::testing::Broker::start_beside(&admin, &database.name).await;
    admin.close().await;
    let mut command = support::shop(&database.url);
    command
        .arg("serve")
        .env("SHOP_KAFKA_BROKERS", broker.brokers())
        .env("SHOP_PAYMENT_GATEWAY", "local")
        .env("SHOP_COMMAND_API_ADDR", "127.0.0.1:0")
        .env("SHOP_QUERY_API_ADDR", "127.0.0.1:0")
        .env("SHOP_OPS_ADDR", "127.0.0.1:0");
    Serve {
        process: ShopProcess::spawn(command, 3),
        _broker: broker,
        _database: database,
    }
}

/// Metric names in PromQL expressions, histogram series folded into their metric.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("shop_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        rest = &rest[start + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(base);
    }
    names
}

#[tokio::test]
async fn probes_routes_and_every_dashboard_and_alert_metric_are_real() {
    let serve = start_serve().await;
    let ops = serve.url("operations");
    let command = serve.url("command API");
    let query = serve.url("query API");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // the probe paths the Deployments use answer on the operations port
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = client.get(format!("{ops}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // the gateway's routes reach real handlers (a 404 would mean a wrong prefix)
    let objects = k8s_base();
    let ingress = &of_kind(&objects, "Ingress")[0];
    for path in ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
    {
        let prefix = path["path"].as_str().unwrap();
        let service = path["backend"]["service"]["name"].as_str().unwrap();
        let (base, probe) = match (service, prefix) {
            ("command-api", "/api") => (&command, "/api/openapi.json"),
            ("command-api", "/webhooks") => (&command, "/webhooks/stripe"),
            ("query-api", "/graphql") => (&query, "/graphql"),
            other => panic!("an ingress route nobody checks: {other:?}"),
        };
        let response = client
            .post(format!("{base}{probe}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 404, "{prefix} → {service}{probe}");
    }

    // real traffic: sign up, a refused request, a cart, a checkout to confirmation
    let (status, session) = post(
        &client,
        &format!("{command}/api/auth/register"),
        None,
        json!({"email": "ops@example.com", "password": "a long password", "name": "Ops"}),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let token = session["access_token"].as_str().unwrap().to_owned();
    let (status, _) = post(
        &client,
        &format!("{command}/api/carts/not-a-cart/items"),
        Some(&token),
        json!({}),
    )
    .await;
    assert!((400..500).contains(&status));
    let (_, cart) = post(
        &client,
        &format!("{command}/api/carts"),
        Some(&token),
        json!({}),
    )
    .await;
    let cart = cart["cart_id"].as_str().unwrap().to_owned();
    post(
        &client,
        &format!("{command}/api/carts/{cart}/items"),
        Some(&token),
        json!({"sku": "HP-100", "quantity": 1}),
    )
    .await;
    let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let (status, checkout) = post(
        &client,
        &format!("{command}/api/carts/{cart}/checkout"),
        Some(&token),
        json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(status, 202, "{checkout}");
    let order = checkout["order_id"].as_str().unwrap().to_owned();
    let mut confirmed = false;
    for _ in 0..200 {
        let (_, response) = post(&client, &format!("{query}/graphql"), Some(&token),
            json!({"query": "query($id: UUID!) { order(id: $id) { status } }", "variables": {"id": order}})).await;
        if response["data"]["order"]["status"] == "CONFIRMED" {
            confirmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(confirmed, "the checkout did not confirm");

    // every metric the dashboards and alerts use is exported
    let mut used = metric_names(&read("deploy/prometheus/alerts.yml"));
    used.extend(metric_names(&read(
        "deploy/grafana/dashboards/shop-overview.json",
    )));
    assert!(used.len() >= 10, "{used:?}");
    let mut missing = used.clone();
    for _ in 0..100 {
        let scraped = client
            .get(format!("{ops}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let exported = metric_names(&scraped);
        missing = used.difference(&exported).cloned().collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "used by dashboards or alerts but not exported: {missing:?}"
    );
    // a request moves its counter
    let scraped = client
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = scraped
        .lines()
        .find(|l| {
            l.starts_with("shop_http_requests_total")
                && l.contains("route=\"/api/carts/{id}/checkout\"")
                && l.contains("status=\"202\"")
        })
        .unwrap_or_else(|| panic!("no checkout request counted in:\n{scraped}"));
    assert!(line.ends_with(" 1"), "{line}");
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

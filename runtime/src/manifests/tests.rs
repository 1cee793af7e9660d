use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::*;

fn options() -> Options {
    Options {
        image: "registry.example/shop:1.0.0".to_owned(),
        app: "shop".to_owned(),
        namespace: None,
        nats_url: "nats://nats.nats.svc.cluster.local:4222".to_owned(),
        js_domain: None,
        monitoring_endpoint: "nats-headless.nats.svc.cluster.local:8222".to_owned(),
        account: "$G".to_owned(),
        max_replicas: 10,
        service_monitor: false,
        monitoring: false,
        shutdown_timeout: Duration::from_secs(25),
        command_line: "shop manifests --image registry.example/shop:1.0.0".to_owned(),
    }
}

fn function(name: &str, stream: &str, max_workers: u32) -> Function {
    Function {
        name: name.to_owned(),
        stream: Some(stream.to_owned()),
        max_workers,
        ordered: false,
    }
}

fn request(name: &str, max_workers: u32) -> Function {
    Function {
        name: name.to_owned(),
        stream: None,
        max_workers,
        ordered: false,
    }
}

fn shop() -> Vec<Function> {
    vec![
        function("audit_log", "SHOP", 4),
        function("charge_payment", "SHOP", 16),
        function("reserve_inventory", "ORDERS", 8),
    ]
}

/// Every document of a rendered stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .collect()
}

fn kinds_and_names(documents: &[Value]) -> Vec<(String, String)> {
    documents
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().expect("kind").to_owned(),
                d["metadata"]["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect()
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_jetstream_domain_reaches_every_pod_through_the_config_map() {
    let plain = documents(&render(&options(), &shop(), &[]).expect("renders"));
    let data = &find(&plain, "ConfigMap", "shop-config")["data"];
    assert!(
        data.get("NATS_JS_DOMAIN").is_none(),
        "no domain unless configured: {data}"
    );

    let options = Options {
        js_domain: Some("hub".to_owned()),
        ..options()
    };
    let documents = documents(&render(&options, &shop(), &[]).expect("renders"));
    let data = &find(&documents, "ConfigMap", "shop-config")["data"];
    assert_eq!(data["NATS_JS_DOMAIN"], "hub");
    // The Deployments and the provision Job read their environment from that ConfigMap.
    let pods = documents
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
        .count();
    assert_eq!(
        pods,
        shop().len() + 1,
        "a Deployment per function and the Job"
    );
    for document in documents
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
    {
        let containers = document["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        for container in containers {
            assert_eq!(
                container["envFrom"][0]["configMapRef"]["name"], "shop-config",
                "{}",
                document["metadata"]["name"]
            );
        }
    }
}

#[test]
fn one_deployment_per_function_by_default_sorted_with_kubernetes_names() {
    let workloads = plan("shop", &shop(), &[]).expect("plan");
    let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "shop-audit-log",
            "shop-charge-payment",
            "shop-reserve-inventory"
        ]
    );
    assert!(workloads.iter().all(|w| w.functions.len() == 1));
}

#[test]
fn groups_put_functions_together_and_the_rest_stay_alone() {
    let groups = ["payments=reserve_inventory,charge_payment".to_owned()];
    let workloads = plan("shop", &shop(), &groups).expect("plan");
    assert_eq!(workloads.len(), 2);
    assert_eq!(workloads[0].name, "shop-audit-log");
    assert_eq!(workloads[1].name, "shop-payments");
    let members: Vec<&str> = workloads[1]
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(members, ["charge_payment", "reserve_inventory"], "sorted");
}

#[test]
fn bad_groups_are_errors_naming_the_problem() {
    let err = |groups: &[&str]| {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        plan("shop", &shop(), &groups).expect_err("invalid")
    };
    assert_eq!(
        err(&["payments"]),
        ManifestError::MalformedGroup("payments".into())
    );
    assert_eq!(
        err(&["payments="]),
        ManifestError::MalformedGroup("payments=".into())
    );
    assert!(matches!(
        err(&["payments=refund"]),
        ManifestError::UnknownFunction { function, known, .. }
            if function == "refund" && known == "audit_log, charge_payment, reserve_inventory"
    ));
    assert_eq!(
        err(&["a=audit_log", "b=audit_log"]),
        ManifestError::GroupedTwice("audit_log".into())
    );
    assert!(matches!(
        err(&["Payments=audit_log"]),
        ManifestError::BadName {
            what: "--group",
            ..
        }
    ));
    assert_eq!(
        err(&["audit-log=charge_payment"]),
        ManifestError::DuplicateName("shop-audit-log".into())
    );
}

#[test]
fn nothing_selected_renders_nothing() {
    assert_eq!(
        render(&options(), &[], &[]),
        Err(ManifestError::NoFunctions)
    );
}

#[test]
fn names_must_be_kubernetes_labels() {
    for good in ["shop", "a", "shop-2", "a-b-c"] {
        assert!(check_name("x", good).is_ok(), "{good}");
    }
    for bad in ["", "Shop", "2shop", "shop-", "shop_x", &"a".repeat(64)] {
        assert!(check_name("x", bad).is_err(), "{bad}");
    }
}

#[test]
fn the_stream_holds_a_header_then_the_objects_in_a_fixed_order() {
    let yaml = render(&options(), &shop(), &[]).expect("render");
    assert!(
        yaml.starts_with("# Generated by `shop manifests --image registry.example/shop:1.0.0`.\n")
    );
    let documents = documents(&yaml);
    let kinds: Vec<String> = kinds_and_names(&documents)
        .into_iter()
        .map(|(kind, name)| format!("{kind}/{name}"))
        .collect();
    let job = kinds[1].clone();
    assert!(job.starts_with("Job/shop-provision-"), "{job}");
    let mut expected = vec!["ConfigMap/shop-config".to_owned(), job];
    for name in [
        "shop-audit-log",
        "shop-charge-payment",
        "shop-reserve-inventory",
    ] {
        for kind in [
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ScaledObject",
        ] {
            expected.push(format!("{kind}/{name}"));
        }
    }
    assert_eq!(kinds, expected);
    assert_eq!(
        render(&options(), &shop(), &[]).expect("render"),
        yaml,
        "deterministic"
    );
}

#[test]
fn deployments_leave_replicas_to_keda_and_outlast_the_drain_budget() {
    let documents = documents(&render(&options(), &shop(), &[]).expect("render"));
    let deployment = find(&documents, "Deployment", "shop-charge-payment");
    assert!(deployment["spec"].get("replicas").is_none());
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 35);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/shop:1.0.0");
    assert_eq!(container["args"], serde_json::json!(["run"]));
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name"),
                e["value"].as_str().expect("value"),
            )
        })
        .collect();
    assert!(env.contains(&("JETFN_FUNCTIONS", "charge_payment")));
    assert!(env.contains(&("JETFN_SHUTDOWN_TIMEOUT", "25s")));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/health");
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        container["envFrom"][1]["secretRef"],
        serde_json::json!({ "name": "shop-nats", "optional": true })
    );

    let mut slow = options();
    slow.shutdown_timeout = Duration::from_millis(60_500);
    let slow = documents_of(&slow);
    let deployment = find(&slow, "Deployment", "shop-audit-log");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        71
    );
}

#[test]
fn scaled_objects_name_each_functions_stream_and_consumer_with_string_metadata() {
    let groups = ["payments=reserve_inventory,charge_payment".to_owned()];
    let documents = documents(&render(&options(), &shop(), &groups).expect("render"));
    let scaled = find(&documents, "ScaledObject", "shop-payments");
    let spec = &scaled["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], "shop-payments");
    assert_eq!(spec["minReplicaCount"], 0);
    assert_eq!(spec["maxReplicaCount"], 10);
    assert_eq!(spec["fallback"]["replicas"], 1);
    let triggers = spec["triggers"].as_array().expect("triggers");
    let seen: Vec<(&str, &str, &str)> = triggers
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "nats-jetstream");
            let metadata = t["metadata"].as_object().expect("metadata");
            assert!(metadata.values().all(Value::is_string), "{metadata:?}");
            assert_eq!(metadata["account"], "$G");
            assert_eq!(
                metadata["natsServerMonitoringEndpoint"],
                "nats-headless.nats.svc.cluster.local:8222"
            );
            (
                metadata["stream"].as_str().expect("stream"),
                metadata["consumer"].as_str().expect("consumer"),
                metadata["lagThreshold"].as_str().expect("lag"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("SHOP", "charge_payment", "16"),
            ("ORDERS", "reserve_inventory", "8")
        ]
    );
    let deployment = find(&documents, "Deployment", "shop-payments");
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["value"], "charge_payment,reserve_inventory");
}

#[test]
fn a_deployment_with_request_functions_keeps_one_pod_and_scales_on_cpu_too() {
    let mut functions = shop();
    functions.push(request("check_stock", 64));
    let groups = ["stock=check_stock,reserve_inventory".to_owned()];
    let only = documents(&render(&options(), &[request("check_stock", 64)], &[]).expect("render"));
    let documents = documents(&render(&options(), &functions, &groups).expect("render"));
    let scaled = find(&documents, "ScaledObject", "shop-stock");
    assert_eq!(scaled["spec"]["minReplicaCount"], 1);
    let triggers = scaled["spec"]["triggers"].as_array().expect("triggers");
    let types: Vec<&str> = triggers.iter().filter_map(|t| t["type"].as_str()).collect();
    assert_eq!(types, ["nats-jetstream", "cpu"]);
    assert_eq!(triggers[1]["metricType"], "Utilization");
    assert_eq!(triggers[1]["metadata"]["value"], "70");
    // The CPU trigger needs a CPU request on the container.
    let deployment = find(&documents, "Deployment", "shop-stock");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert!(container["resources"]["requests"]["cpu"].is_string());
    // Alone, a request function has only the CPU trigger; event-only workloads scale to zero.
    let alone = find(&only, "ScaledObject", "shop-check-stock");
    assert_eq!(alone["spec"]["minReplicaCount"], 1);
    assert_eq!(alone["spec"]["triggers"][0]["type"], "cpu");
    let events = find(&documents, "ScaledObject", "shop-audit-log");
    assert_eq!(events["spec"]["minReplicaCount"], 0);
}

#[test]
fn the_provision_job_covers_every_function_and_is_renamed_when_its_template_changes() {
    let documents = documents(&render(&options(), &shop(), &[]).expect("render"));
    let (_, name) = kinds_and_names(&documents)[1].clone();
    let job = find(&documents, "Job", &name);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["provision"]));
    assert_eq!(
        container["env"][0]["value"],
        "audit_log,charge_payment,reserve_inventory"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );

    let mut upgraded = options();
    upgraded.image = "registry.example/shop:1.0.1".to_owned();
    let again = documents_of(&upgraded);
    assert_ne!(
        kinds_and_names(&again)[1].1,
        name,
        "a new image is a new Job"
    );
}

fn documents_of(options: &Options) -> Vec<Value> {
    documents(&render(options, &shop(), &[]).expect("render"))
}

#[test]
fn flags_add_a_namespace_everywhere_and_service_monitors() {
    let mut options = options();
    options.namespace = Some("shop-prod".to_owned());
    options.service_monitor = true;
    let documents = documents_of(&options);
    assert!(documents
        .iter()
        .all(|d| d["metadata"]["namespace"] == "shop-prod"));
    let monitor = find(&documents, "ServiceMonitor", "shop-audit-log");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let service = find(&documents, "Service", "shop-audit-log");
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
}

#[test]
fn arguments_are_quoted_only_when_a_shell_needs_it() {
    assert_eq!(shell_quote("--image"), "--image");
    assert_eq!(shell_quote("ghcr.io/a/b:1.0"), "ghcr.io/a/b:1.0");
    assert_eq!(shell_quote("$G"), "'$G'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
}

#[test]
fn the_fingerprint_is_fnv1a_folded() {
    assert_eq!(fingerprint(b""), 0xcbf2_9ce4 ^ 0x8422_2325);
    assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
}

#[test]
fn monitoring_adds_the_alerts_and_the_dashboard_last() {
    let mut options = options();
    options.monitoring = true;
    options.namespace = Some("shop-prod".to_owned());
    let documents = documents_of(&options);
    let tail: Vec<(String, String)> = kinds_and_names(&documents)
        .into_iter()
        .rev()
        .take(2)
        .collect();
    assert_eq!(
        tail,
        [
            ("ConfigMap".to_owned(), "shop-grafana-dashboard".to_owned()),
            ("PrometheusRule".to_owned(), "shop-alerts".to_owned()),
        ]
    );
    let rule = find(&documents, "PrometheusRule", "shop-alerts");
    assert_eq!(rule["metadata"]["namespace"], "shop-prod");
    assert_eq!(rule["spec"], alerts::groups());
    let dashboard = find(&documents, "ConfigMap", "shop-grafana-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["jetfn.json"].as_str().expect("JSON text");
    assert_eq!(json, dashboard::dashboard_json().expect("JSON"));
    assert!(
        render(&self::options(), &shop(), &[])
            .expect("render")
            .lines()
            .all(|l| !l.contains("PrometheusRule")),
        "nothing without --monitoring"
    );
}

#[test]
fn every_alert_is_per_function_or_pod_and_says_what_to_do() {
    let names: Vec<&str> = alerts::ALERTS.iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        [
            "JetfnDeadLetters",
            "JetfnBreakerOpen",
            "JetfnConsumerLagGrowing",
            "JetfnNatsDisconnected",
            "JetfnHandlerFailureRatioHigh",
            "JetfnNoReadyPod",
        ]
    );
    for alert in alerts::ALERTS {
        assert!(
            ["warning", "critical"].contains(&alert.severity),
            "{alert:?}"
        );
        assert!(alert.summary.contains("{{ $labels."), "{alert:?}");
        assert!(alert.description.len() > 100, "{alert:?}");
        assert!(
            alert.expr.contains("by (namespace, function)")
                || alert.name == "JetfnNatsDisconnected",
            "{alert:?}"
        );
    }
    let yaml = render_rules(&options()).expect("rules");
    assert!(yaml.starts_with("# Generated by `"));
    let groups = documents(&yaml);
    assert_eq!(groups[0]["groups"][0]["name"], alerts::GROUP);
    let rules = groups[0]["groups"][0]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), alerts::ALERTS.len());
    assert!(rules[0].get("for").is_none(), "dead letters alert at once");
    assert_eq!(rules[1]["for"], "2m");
}

#[test]
fn every_dashboard_query_is_filtered_by_the_function_variable() {
    let dashboard = dashboard::dashboard();
    assert_eq!(dashboard["uid"], dashboard::UID);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert_eq!(variables[1]["name"], "function");
    assert_eq!(variables[1]["allValue"], ".*");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert_eq!(panels.len(), dashboard::PANELS.len());
    let mut ids = Vec::new();
    for panel in panels {
        ids.push(panel["id"].as_u64().expect("id"));
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                expr.contains(r#"function=~"$function""#) || expr.contains("jetfn_nats_connected"),
                "{expr}"
            );
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
    // Sorted first: `dedup` only drops neighbours.
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");
    let titles: Vec<&str> = dashboard::PANELS.iter().map(|p| p.title).collect();
    for wanted in [
        "Messages by outcome",
        "Handler duration",
        "In flight and workers",
        "Consumer lag",
        "Circuit breaker",
        "Dead letters",
    ] {
        assert!(titles.contains(&wanted), "{wanted}");
    }
}

#[test]
fn an_ordered_functions_lag_asks_for_one_pod_of_the_same_consumer() {
    let mut ordered = function("order_status", "SHOP", 16);
    ordered.ordered = true;
    let documents = documents(&render(&options(), &[ordered], &[]).expect("render"));
    let scaled = find(&documents, "ScaledObject", "shop-order-status");
    let trigger = &scaled["spec"]["triggers"][0]["metadata"];
    assert_eq!(trigger["consumer"], "order_status");
    assert_eq!(trigger["stream"], "SHOP");
    assert_eq!(trigger["lagThreshold"], "1000000000");
    assert_eq!(trigger["activationLagThreshold"], "0");
}

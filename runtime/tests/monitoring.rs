//! Monitoring against a real Prometheus: it scrapes a running runtime in both exposition formats
//! (OpenMetrics, as it asks by default, and the text format 0.0.4 through a proxy that asks for
//! that only: Debian's Prometheus 2.42 predates `scrape_protocols`), loads the rules of
//! deploy/prometheus/, and every query of deploy/grafana/jetfn.json and every alert expression
//! evaluates, with data where the traffic (ack, retry, dead letters, an open breaker, a lost NATS
//! connection) should produce it. Python's `prometheus_client` parser reads both formats too.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{publish_all, start};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use jetfn_test_support::{http_get_with, prometheus_client_python, Prometheus};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long Prometheus may take to see what the runtime did (1 s scrapes and evaluations).
const SCRAPED: Duration = Duration::from_secs(20);
/// What Prometheus 2.x asks for.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/\
    openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT_ACCEPT: &str = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[event_handler(subject = "mon.orders", max_deliver = 2, backoff = "100ms..100ms")]
async fn monitored(_ctx: Context, event: Event<Value>) -> Result<(), HandlerError> {
    match event.data["fail"].as_str() {
        Some("retry") => Err(HandlerError::retryable("gateway timeout")),
        Some("permanent") => Err(HandlerError::permanent("card refused")),
        _ => Ok(()),
    }
}

#[event_handler(
    subject = "mon.jobs",
    breaker_failures = 2,
    breaker_cooldown = "5m",
    max_deliver = 100,
    backoff = "100ms..100ms",
    max_workers = 1
)]
async fn tripping(_ctx: Context, _event: Event<Value>) -> Result<(), HandlerError> {
    Err(HandlerError::retryable("dependency down"))
}

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Serves `/metrics` of `target` as asked with `Accept: text/plain;version=0.0.4` only.
async fn text_only_proxy(target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let Ok(response) =
                    http_get_with(target, "/metrics", &[("Accept", TEXT_ACCEPT)]).await
                else {
                    return;
                };
                let reply = format!(
                    "HTTP/1.1 {} OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: \
                     close\r\n\r\n{}",
                    response.status,
                    response.header("content-type").unwrap_or_default(),
                    response.body.len(),
                    response.body
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// The families Python's prometheus_client finds in `text`: name -> (type, sample names).
fn python_families(text: &str, openmetrics: bool) -> Value {
    let parser = if openmetrics {
        "prometheus_client.openmetrics.parser"
    } else {
        "prometheus_client.parser"
    };
    let script = format!(
        "import json, sys, {parser} as p\n\
         print(json.dumps({{f.name: [f.type, sorted({{s.name for s in f.samples}}), len(f.samples)] \
         for f in p.text_string_to_metric_families(sys.stdin.read())}}))"
    );
    let mut child = Command::new(prometheus_client_python())
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success(),
        "{parser} rejects the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The result of an instant query that must succeed.
async fn result(prometheus: &Prometheus, expr: &str) -> Vec<Value> {
    let answer = prometheus.query(expr).await;
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{expr}: no result vector: {answer}"))
}

async fn has_data(prometheus: &Prometheus, expr: &str) -> bool {
    !result(prometheus, expr).await.is_empty()
}

async fn wait_for(prometheus: &Prometheus, expr: &str) {
    assert!(
        eventually(SCRAPED, || has_data(prometheus, expr)).await,
        "no data for {expr} within {SCRAPED:?}: {}",
        prometheus.query(expr).await
    );
}

/// Every panel query of the dashboard, as Grafana sends it for `functions`.
fn dashboard_queries(functions: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/jetfn.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    let expr = t["expr"]
                        .as_str()
                        .expect("expr")
                        .replace("$function", functions)
                        .replace("$__rate_interval", "1m");
                    (title.clone(), expr)
                })
        })
        .collect()
}

/// Every alert of the rules file: name and expression.
fn alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/jetfn-rules.yaml")).expect("rules");
    let rules = Value::deserialize(serde_norway::Deserializer::from_str(&text)).expect("YAML");
    rules["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().expect("alert").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

fn alert<'a>(alerts: &'a [(String, String)], name: &str) -> &'a str {
    &alerts
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no alert {name}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_both_formats_and_every_query_and_alert_evaluates() {
    let mut server = NatsServer::start();
    let runtime = start(&server, "monitored,tripping", &[]).await;
    let addr = runtime.http_addr();

    // Negotiation, and Python's parsers on both formats.
    let openmetrics = http_get_with(addr, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)])
        .await
        .expect("GET /metrics");
    assert_eq!(
        openmetrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = http_get_with(addr, "/metrics", &[]).await.expect("GET");
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.body.contains("# TYPE jetfn_messages_total counter\n"));
    for (body, is_openmetrics) in [(&text.body, false), (&openmetrics.body, true)] {
        let families = python_families(body, is_openmetrics);
        let messages = &families["jetfn_messages"];
        assert_eq!(messages[0], "counter", "{families}");
        assert_eq!(messages[1], serde_json::json!(["jetfn_messages_total"]));
        assert_eq!(messages[2], 6, "two functions, three outcomes: {families}");
        assert_eq!(families["jetfn_handler_duration_seconds"][0], "histogram");
        assert_eq!(families["jetfn_ready"][0], "gauge");
        assert_eq!(families["jetfn_nats_connected"][0], "gauge");
    }

    let proxy = text_only_proxy(addr).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n\
         \x20 - job_name: openmetrics\n    static_configs:\n      - targets: [\"{addr}\"]\n\
         \x20 - job_name: text\n    static_configs:\n      - targets: [\"{proxy}\"]\n",
        rules = deploy("prometheus/jetfn-rules.yaml").display(),
    );
    let prometheus = Prometheus::start(&config).await;
    for job in ["openmetrics", "text"] {
        wait_for(&prometheus, &format!("up{{job=\"{job}\"}} == 1")).await;
        wait_for(
            &prometheus,
            &format!("jetfn_messages_total{{job=\"{job}\",function=\"monitored\"}}"),
        )
        .await;
    }

    // Traffic through every outcome, and a breaker that opens.
    let js = async_nats::jetstream::new(server.client().await);
    let orders = [
        "{}",
        "{}",
        "{}",
        r#"{"fail":"retry"}"#,
        r#"{"fail":"permanent"}"#,
        "not json",
    ];
    publish_all(&js, "mon.orders", orders.map(str::to_owned)).await;
    publish_all(&js, "mon.jobs", ["{}", "{}"].map(str::to_owned)).await;
    for outcome in ["ack", "retry", "dlq"] {
        wait_for(
            &prometheus,
            &format!("jetfn_messages_total{{function=\"monitored\",outcome=\"{outcome}\"}} > 0"),
        )
        .await;
    }
    wait_for(
        &prometheus,
        r#"jetfn_breaker_state{function="tripping"} == 2"#,
    )
    .await;
    // While the breaker holds the consumer paused, the backlog grows.
    for round in 1..=3 {
        publish_all(&js, "mon.jobs", (0..round).map(|_| "{}".to_owned())).await;
        wait_for(
            &prometheus,
            &format!(
                "jetfn_consumer_pending{{function=\"tripping\"}} >= {}",
                round * (round + 1) / 2
            ),
        )
        .await;
    }

    // Every dashboard query evaluates, with data.
    for (title, expr) in dashboard_queries("monitored|tripping") {
        assert!(
            has_data(&prometheus, &expr).await,
            "panel {title:?}: no data for {expr}"
        );
    }
    // Every alert expression evaluates; these have data now, the others none.
    let alerts = alerts();
    let firing_now = [
        "JetfnDeadLetters",
        "JetfnBreakerOpen",
        "JetfnConsumerLagGrowing",
        "JetfnHandlerFailureRatioHigh",
    ];
    for (name, expr) in &alerts {
        let data = has_data(&prometheus, expr).await;
        assert_eq!(
            data,
            firing_now.contains(&name.as_str()),
            "{name}: {expr} has {}data",
            if data { "" } else { "no " }
        );
    }
    // Prometheus evaluates the rules themselves without error; an alert without `for` fires.
    wait_for(
        &prometheus,
        r#"ALERTS{alertname="JetfnDeadLetters",alertstate="firing",function="monitored"}"#,
    )
    .await;

    // NATS goes away: the disconnected and no-ready-pod alerts have data.
    server.stop();
    wait_for(&prometheus, "max(jetfn_nats_connected) == 0").await;
    for name in ["JetfnNatsDisconnected", "JetfnNoReadyPod"] {
        let expr = alert(&alerts, name);
        wait_for(&prometheus, expr).await;
    }
    let lagging = result(&prometheus, alert(&alerts, "JetfnNoReadyPod")).await;
    assert_eq!(lagging.len(), 1, "{lagging:?}");
    assert_eq!(lagging[0]["metric"]["function"], "tripping");

    let rules = prometheus.api("rules").await;
    let rules: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(rules.len(), alerts.len());
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    drop(prometheus);
    runtime.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), runtime.wait()).await;
}

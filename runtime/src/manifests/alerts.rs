//! The alerting rules (`manifests --monitoring`): the groups of a Prometheus rules file, rendered
//! as a plain rules file (`--emit prometheus-rules`, what `promtool` and a bare Prometheus load)
//! and as the `spec` of a prometheus-operator `PrometheusRule`.
//!
//! Every alert is per function (`namespace`, `function` labels), but `JetfnNatsDisconnected`,
//! which is per pod. `deploy/prometheus/jetfn-rules.test.yaml` holds the `promtool test rules`
//! cases: each alert fires on the series that should fire it and stays quiet otherwise.

use serde_json::{json, Value};

use super::{metadata, Options};

/// One alerting rule.
#[derive(Debug)]
pub(crate) struct Alert {
    pub(crate) name: &'static str,
    pub(crate) expr: &'static str,
    /// How long `expr` must hold before the alert fires (`None`: at once).
    pub(crate) hold: Option<&'static str>,
    pub(crate) severity: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) description: &'static str,
}

/// The name of the one rule group.
pub(crate) const GROUP: &str = "jetfn";

/// Every alert, in the order they are rendered.
pub(crate) const ALERTS: &[Alert] = &[
    Alert {
        name: "JetfnDeadLetters",
        expr: r#"sum by (namespace, function) (increase(jetfn_messages_total{outcome="dlq"}[5m])) > 0"#,
        hold: None,
        severity: "warning",
        summary: "Function {{ $labels.function }} is dead-lettering messages",
        description: "{{ $labels.function }} dead-lettered about {{ $value | humanize }} messages \
            in the last 5 minutes (a permanent error, an undecodable payload, or retries \
            exhausted). List them with `functions dlq list {{ $labels.function }}` (the \
            Jetfn-Error and Jetfn-Error-Kind headers say why), fix the handler or the producer, \
            then republish them with `functions dlq replay {{ $labels.function }}`.",
    },
    Alert {
        name: "JetfnBreakerOpen",
        expr: "max by (namespace, function) (max_over_time(jetfn_breaker_state[1m])) == 2",
        hold: Some("2m"),
        severity: "warning",
        summary: "The circuit breaker of {{ $labels.function }} keeps opening",
        description: "The circuit breaker of {{ $labels.function }} has opened in every minute \
            for 2 minutes: its handler fails again and again (a dependency down?). While open, \
            the consumer is paused on the server and messages wait in the stream without \
            burning deliveries. Read the handler's errors in its logs and restore the \
            dependency; the breaker closes by itself once a trial message succeeds.",
    },
    Alert {
        name: "JetfnConsumerLagGrowing",
        expr: "max by (namespace, function) (jetfn_consumer_pending) > 0 and max by (namespace, \
               function) (deriv(jetfn_consumer_pending[10m])) > 0",
        hold: Some("15m"),
        severity: "warning",
        summary: "The backlog of {{ $labels.function }} keeps growing",
        description: "Messages waiting for {{ $labels.function }} (num_pending, now {{ $value }}) \
            have grown for 15 minutes: it is not keeping up. Check that KEDA scales its \
            Deployment (maxReplicaCount reached? `kubectl get scaledobject`), the handler's \
            duration, its max_workers, and whether its circuit breaker is open.",
    },
    Alert {
        name: "JetfnNatsDisconnected",
        expr: "jetfn_nats_connected == 0",
        hold: Some("2m"),
        severity: "critical",
        summary: "{{ $labels.instance }} is not connected to NATS",
        description: "{{ $labels.instance }} has been disconnected from NATS for 2 minutes: it is \
            unready and processes nothing (it reconnects by itself). Check the NATS servers, \
            the network between them and the pod, and its NATS_URL and credentials (the \
            <app>-config ConfigMap and <app>-nats Secret).",
    },
    Alert {
        name: "JetfnHandlerFailureRatioHigh",
        expr: r#"sum by (namespace, function) (rate(jetfn_messages_total{outcome=~"retry|dlq"}[5m])) / sum by (namespace, function) (rate(jetfn_messages_total[5m])) > 0.25"#,
        hold: Some("10m"),
        severity: "warning",
        summary: "More than a quarter of {{ $labels.function }}'s messages fail",
        description: "{{ $value | humanizePercentage }} of the messages {{ $labels.function }} \
            settled in the last 5 minutes were retried or dead-lettered, for 10 minutes. Read \
            the handler's errors in its logs (or its traces); retried messages come back after \
            the backoff, exhausted ones go to the dead-letter stream.",
    },
    Alert {
        name: "JetfnNoReadyPod",
        expr: "max by (namespace, function) (last_over_time(jetfn_consumer_pending[1h])) > 0 \
               unless on (namespace, function) (max by (namespace, function) (jetfn_ready) == 1)",
        hold: Some("5m"),
        severity: "critical",
        summary: "{{ $labels.function }} has a backlog and no ready pod",
        description: "{{ $labels.function }} has {{ $value }} messages waiting (its last known \
            num_pending) and for 5 minutes no pod has been ready for it: not connected to NATS, \
            its consumer not bound, or no pod scraped at all. Check its pods (`kubectl get \
            pods`, their /ready body names the function's status and last error), the KEDA \
            ScaledObject, and that the provision Job created its stream and consumer.",
    },
];

/// The rule groups, as a rules file's top level and a PrometheusRule's `spec` hold them.
pub(crate) fn groups() -> Value {
    let rules: Vec<Value> = ALERTS.iter().map(rule).collect();
    json!({ "groups": [{ "name": GROUP, "rules": rules }] })
}

fn rule(alert: &Alert) -> Value {
    let mut rule = json!({
        "alert": alert.name,
        "expr": alert.expr,
        "labels": { "severity": alert.severity },
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
        },
    });
    if let (Some(hold), Some(map)) = (alert.hold, rule.as_object_mut()) {
        map.insert("for".to_owned(), Value::from(hold));
    }
    rule
}

/// The prometheus-operator object holding [`groups`].
pub(crate) fn prometheus_rule(options: &Options) -> Value {
    let labels = json!({
        "app.kubernetes.io/name": options.app,
        "app.kubernetes.io/managed-by": "jetfn",
        "app.kubernetes.io/component": "monitoring",
    });
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(options, &format!("{}-alerts", options.app), labels),
        "spec": groups(),
    })
}

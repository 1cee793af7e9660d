//! The Grafana dashboard (`manifests --monitoring`, `--emit grafana-dashboard`): one row of
//! panels per concern, every query filtered by the `function` variable, the Prometheus data
//! source chosen by the `datasource` variable (so the same JSON imports anywhere and loads
//! through the kube-prometheus-stack sidecar or file provisioning).

use serde_json::{json, Value};

use super::{metadata, ManifestError, Options};

/// The dashboard's `uid`: stable, so provisioning updates it rather than adding another.
pub(crate) const UID: &str = "jetfn-functions";
/// The key of the dashboard in its ConfigMap and the file name under `deploy/grafana/`.
pub(crate) const FILE_NAME: &str = "jetfn.json";

/// One panel: a title, how it draws, and its queries (expression, legend).
#[derive(Debug)]
pub(crate) struct Panel {
    pub(crate) title: &'static str,
    pub(crate) description: &'static str,
    /// A Grafana panel type: `timeseries` or `state-timeline`.
    pub(crate) kind: &'static str,
    /// A Grafana unit.
    pub(crate) unit: &'static str,
    pub(crate) queries: &'static [(&'static str, &'static str)],
    /// For a state panel: value, text and color of each state.
    pub(crate) states: &'static [(&'static str, &'static str, &'static str)],
}

/// Every panel, left to right, top to bottom (two per row).
pub(crate) const PANELS: &[Panel] = &[
    Panel {
        title: "Messages by outcome",
        description: "Messages settled per second: ack (handler succeeded), retry (NAKed with \
                      backoff), dlq (dead-lettered).",
        kind: "timeseries",
        unit: "ops",
        queries: &[(
            r#"sum by (function, outcome) (rate(jetfn_messages_total{function=~"$function"}[$__rate_interval]))"#,
            "{{function}} {{outcome}}",
        )],
        states: &[],
    },
    Panel {
        title: "Handler duration",
        description: "Quantiles of one handler run, from the jetfn_handler_duration_seconds \
                      histogram.",
        kind: "timeseries",
        unit: "s",
        queries: &[
            (
                r#"histogram_quantile(0.5, sum by (function, le) (rate(jetfn_handler_duration_seconds_bucket{function=~"$function"}[$__rate_interval])))"#,
                "{{function}} p50",
            ),
            (
                r#"histogram_quantile(0.9, sum by (function, le) (rate(jetfn_handler_duration_seconds_bucket{function=~"$function"}[$__rate_interval])))"#,
                "{{function}} p90",
            ),
            (
                r#"histogram_quantile(0.99, sum by (function, le) (rate(jetfn_handler_duration_seconds_bucket{function=~"$function"}[$__rate_interval])))"#,
                "{{function}} p99",
            ),
        ],
        states: &[],
    },
    Panel {
        title: "In flight and workers",
        description: "Handler runs in progress and the autoscaled worker count, summed over \
                      pods.",
        kind: "timeseries",
        unit: "short",
        queries: &[
            (
                r#"sum by (function) (jetfn_in_flight{function=~"$function"})"#,
                "{{function}} in flight",
            ),
            (
                r#"sum by (function) (jetfn_workers{function=~"$function"})"#,
                "{{function}} workers",
            ),
        ],
        states: &[],
    },
    Panel {
        title: "Consumer lag",
        description: "Messages in the stream not yet delivered to the function's consumer \
                      (num_pending): the lag KEDA scales on, less what is being handled.",
        kind: "timeseries",
        unit: "short",
        queries: &[(
            r#"max by (function) (jetfn_consumer_pending{function=~"$function"})"#,
            "{{function}}",
        )],
        states: &[],
    },
    Panel {
        title: "Circuit breaker",
        description: "The most open breaker among the function's pods: closed, half-open \
                      (one trial message) or open (consumer paused).",
        kind: "state-timeline",
        unit: "none",
        queries: &[(
            r#"max by (function) (jetfn_breaker_state{function=~"$function"})"#,
            "{{function}}",
        )],
        states: &[
            ("0", "closed", "green"),
            ("1", "half-open", "yellow"),
            ("2", "open", "red"),
        ],
    },
    Panel {
        title: "Dead letters",
        description: "Messages dead-lettered per interval; `functions dlq list FUNCTION` shows \
                      them.",
        kind: "timeseries",
        unit: "short",
        queries: &[(
            r#"sum by (function) (increase(jetfn_messages_total{function=~"$function",outcome="dlq"}[$__rate_interval]))"#,
            "{{function}}",
        )],
        states: &[],
    },
    Panel {
        title: "Ready pods",
        description: "Pods ready for the function: connected to NATS, consumer bound, not \
                      draining.",
        kind: "timeseries",
        unit: "short",
        queries: &[(
            r#"sum by (function) (jetfn_ready{function=~"$function"})"#,
            "{{function}}",
        )],
        states: &[],
    },
    Panel {
        title: "NATS connection",
        description: "1 while a pod is connected to NATS.",
        kind: "state-timeline",
        unit: "none",
        queries: &[("min by (instance) (jetfn_nats_connected)", "{{instance}}")],
        states: &[("0", "disconnected", "red"), ("1", "connected", "green")],
    },
];

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

fn panel(index: usize, panel: &Panel) -> Value {
    let targets: Vec<Value> = panel
        .queries
        .iter()
        .zip('A'..)
        .map(|((expr, legend), ref_id)| {
            json!({
                "datasource": datasource(),
                "expr": expr,
                "legendFormat": legend,
                "refId": ref_id.to_string(),
            })
        })
        .collect();
    let mut defaults = json!({ "unit": panel.unit });
    if !panel.states.is_empty() {
        let options: serde_json::Map<String, Value> = panel
            .states
            .iter()
            .enumerate()
            .map(|(index, (value, text, color))| {
                let mapping = json!({ "color": color, "index": index, "text": text });
                ((*value).to_owned(), mapping)
            })
            .collect();
        defaults["mappings"] = json!([{ "type": "value", "options": options }]);
        defaults["color"] = json!({ "mode": "thresholds" });
        defaults["thresholds"] =
            json!({ "mode": "absolute", "steps": [{ "color": "green", "value": null }] });
    }
    // Two panels per row, each half the 24-column grid.
    let (x, y) = ((index % 2) * 12, (index / 2) * 8);
    json!({
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource(),
        "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
        "fieldConfig": { "defaults": defaults, "overrides": [] },
        "options": { "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true } },
        "targets": targets,
    })
}

/// The dashboard as Grafana's JSON model.
pub(crate) fn dashboard() -> Value {
    let panels: Vec<Value> = PANELS
        .iter()
        .enumerate()
        .map(|(i, p)| panel(i, p))
        .collect();
    json!({
        "uid": UID,
        "title": "jetfn functions",
        "description": "Messages, handler duration, workers, lag, breakers and dead letters of \
                        jetfn functions (rendered by `manifests --monitoring`).",
        "tags": ["jetfn", "nats"],
        "editable": true,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": { "from": "now-1h", "to": "now" },
        "timezone": "",
        "version": 1,
        "annotations": { "list": [] },
        "links": [],
        "templating": { "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "options": [],
            },
            {
                "name": "function",
                "label": "Function",
                "type": "query",
                "datasource": datasource(),
                "definition": "label_values(jetfn_messages_total, function)",
                "query": {
                    "query": "label_values(jetfn_messages_total, function)",
                    "refId": "functions",
                },
                "includeAll": true,
                "allValue": ".*",
                "multi": true,
                "current": {},
                "hide": 0,
                "refresh": 2,
                "sort": 1,
                "options": [],
            },
        ] },
        "panels": panels,
    })
}

/// The dashboard's JSON text: pretty, keys sorted, a final newline (the checked-in file).
pub(crate) fn dashboard_json() -> Result<String, ManifestError> {
    let mut text = serde_json::to_string_pretty(&dashboard())
        .map_err(|e| ManifestError::Json(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// The ConfigMap Grafana's dashboard sidecar (kube-prometheus-stack) loads: label
/// `grafana_dashboard: "1"`.
pub(crate) fn config_map(options: &Options) -> Result<Value, ManifestError> {
    let labels = json!({
        "app.kubernetes.io/name": options.app,
        "app.kubernetes.io/managed-by": "jetfn",
        "app.kubernetes.io/component": "monitoring",
        "grafana_dashboard": "1",
    });
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options, &format!("{}-grafana-dashboard", options.app), labels),
        "data": { FILE_NAME: dashboard_json()? },
    }))
}

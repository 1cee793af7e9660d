//! The built-in kinds: ConfigMap, provision Job, Deployment, PodDisruptionBudget, Service, and
//! the Prometheus-operator ServiceMonitor.

use serde_json::{json, Value};

use super::{fingerprint, metadata, ManifestError, Options, Workload};
use crate::manifests::Function;

/// The port of `/health`, `/ready` and `/metrics` in the pods.
const HTTP_PORT: u16 = 8080;
/// Where the optional credentials Secret is mounted (for `NATS_CREDS`, `NATS_CA`, ... files).
const SECRET_DIR: &str = "/etc/jetfn/nats";
/// Seconds the pod gets past the drain budget: flushing and closing the connection, and the
/// process's own exit.
const GRACE_MARGIN_SECONDS: u64 = 10;
/// The user of the distroless `nonroot` images.
const NONROOT: u32 = 65532;

fn labels(options: &Options) -> Value {
    json!({
        "app.kubernetes.io/name": options.app,
        "app.kubernetes.io/managed-by": "jetfn",
    })
}

/// What the Deployment's pods carry, and what its Service, PDB and ServiceMonitor select.
fn selector(options: &Options, w: &Workload) -> Value {
    json!({
        "app.kubernetes.io/name": options.app,
        "app.kubernetes.io/instance": w.name,
    })
}

fn workload_labels(options: &Options, w: &Workload) -> Value {
    let mut labels = labels(options);
    if let (Some(map), Value::Object(selector)) = (labels.as_object_mut(), selector(options, w)) {
        map.extend(selector);
    }
    labels
}

fn config_map_name(options: &Options) -> String {
    format!("{}-config", options.app)
}

fn secret_name(options: &Options) -> String {
    format!("{}-nats", options.app)
}

/// `NATS_URL`, `NATS_JS_DOMAIN` when one is configured, and JSON logs for every pod (the
/// Deployments and the provision Job take their environment from it).
pub(super) fn config_map(options: &Options) -> Value {
    let mut data = json!({
        "NATS_URL": options.nats_url,
        "JETFN_LOG_FORMAT": "json",
    });
    if let (Some(domain), Some(map)) = (&options.js_domain, data.as_object_mut()) {
        map.insert("NATS_JS_DOMAIN".to_owned(), domain.as_str().into());
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options, &config_map_name(options), labels(options)),
        "data": data,
    })
}

/// Creates the streams and consumers of every rendered function before KEDA needs them.
pub(super) fn provision_job(
    options: &Options,
    functions: &[Function],
) -> Result<Value, ManifestError> {
    // Request functions have no stream or consumer to create.
    let names: Vec<&str> = functions
        .iter()
        .filter(|f| !f.is_request())
        .map(|f| f.name.as_str())
        .collect();
    let mut pod_labels = labels(options);
    if let Some(map) = pod_labels.as_object_mut() {
        map.insert("app.kubernetes.io/component".to_owned(), "provision".into());
    }
    let env = json!([{ "name": "JETFN_FUNCTIONS", "value": names.join(",") }]);
    let resources = json!({
        "requests": { "cpu": "50m", "memory": "32Mi" },
        "limits": { "memory": "128Mi" },
    });
    let mut pod = pod_spec(options, container(options, "provision", env, resources));
    if let Some(map) = pod.as_object_mut() {
        map.insert("restartPolicy".to_owned(), "OnFailure".into());
    }
    let template = json!({ "metadata": { "labels": pod_labels }, "spec": pod });
    let hash = fingerprint(template.to_string().as_bytes());
    let name = format!("{}-provision-{hash:08x}", options.app);
    super::check_name("the provision Job", &name)?;
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(options, &name, pod_labels),
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 3600,
            "template": template,
        },
    }))
}

/// The Deployment of a workload: no `replicas`, so KEDA owns the count.
pub(super) fn deployment(options: &Options, w: &Workload) -> Value {
    let names: Vec<&str> = w.functions.iter().map(|f| f.name.as_str()).collect();
    let drain = options.shutdown_timeout;
    let env = json!([
        { "name": "JETFN_FUNCTIONS", "value": names.join(",") },
        { "name": "JETFN_HTTP_ADDR", "value": format!("0.0.0.0:{HTTP_PORT}") },
        { "name": "JETFN_SHUTDOWN_TIMEOUT", "value": humantime::format_duration(drain).to_string() },
        { "name": "OTEL_SERVICE_NAME", "value": w.name },
    ]);
    let resources = json!({
        "requests": { "cpu": "100m", "memory": "64Mi" },
        "limits": { "memory": "256Mi" },
    });
    let mut main = container(options, "run", env, resources);
    if let Some(map) = main.as_object_mut() {
        map.insert(
            "ports".to_owned(),
            json!([{ "name": "http", "containerPort": HTTP_PORT, "protocol": "TCP" }]),
        );
        map.insert("startupProbe".to_owned(), probe("/health", 2, 30));
        map.insert("livenessProbe".to_owned(), probe("/health", 10, 3));
        map.insert("readinessProbe".to_owned(), probe("/ready", 5, 2));
    }
    let mut pod = pod_spec(options, main);
    let grace = drain.as_secs() + u64::from(drain.subsec_nanos() > 0) + GRACE_MARGIN_SECONDS;
    if let Some(map) = pod.as_object_mut() {
        map.insert("terminationGracePeriodSeconds".to_owned(), grace.into());
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(options, &w.name, workload_labels(options, w)),
        "spec": {
            "selector": { "matchLabels": selector(options, w) },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 },
            },
            "template": {
                "metadata": {
                    "labels": workload_labels(options, w),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": HTTP_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod,
            },
        },
    })
}

/// At most one pod of the workload evicted at a time (works at any replica count, zero included).
pub(super) fn disruption_budget(options: &Options, w: &Workload) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(options, &w.name, workload_labels(options, w)),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector(options, w) },
        },
    })
}

/// The metrics Service of a workload.
pub(super) fn service(options: &Options, w: &Workload) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(options, &w.name, workload_labels(options, w)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(options, w),
            "ports": [{ "name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP" }],
        },
    })
}

/// Prometheus-operator scraping of the workload's `/metrics`.
pub(super) fn service_monitor(options: &Options, w: &Workload) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(options, &w.name, workload_labels(options, w)),
        "spec": {
            "selector": { "matchLabels": selector(options, w) },
            "endpoints": [{ "port": "http", "path": "/metrics", "interval": "30s" }],
        },
    })
}

/// The runtime's container: non-root, read-only, no capabilities; NATS settings from the
/// ConfigMap and the optional Secret.
fn container(options: &Options, command: &str, env: Value, resources: Value) -> Value {
    json!({
        "name": "jetfn",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [command],
        "env": env,
        "envFrom": [
            { "configMapRef": { "name": config_map_name(options) } },
            { "secretRef": { "name": secret_name(options), "optional": true } },
        ],
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": NONROOT,
            "runAsGroup": NONROOT,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": [{ "name": "nats-secret", "mountPath": SECRET_DIR, "readOnly": true }],
    })
}

fn pod_spec(options: &Options, container: Value) -> Value {
    json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NONROOT,
            "runAsGroup": NONROOT,
            "fsGroup": NONROOT,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "containers": [container],
        "volumes": [{
            "name": "nats-secret",
            "secret": { "secretName": secret_name(options), "optional": true },
        }],
    })
}

fn probe(path: &str, period_seconds: u32, failure_threshold: u32) -> Value {
    json!({
        "httpGet": { "path": path, "port": "http" },
        "periodSeconds": period_seconds,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    })
}

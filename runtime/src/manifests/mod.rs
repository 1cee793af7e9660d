//! The `manifests` command: Kubernetes and KEDA objects for the selected functions, rendered
//! from the registry and the configuration, as one YAML stream on stdout.
//!
//! What it renders, in this order (every map's keys sorted, so the same input gives the same
//! bytes):
//!
//! - a `ConfigMap` `<app>-config` with `NATS_URL` (and JSON logs) for every pod; credentials come
//!   from an optional `Secret` `<app>-nats` that the operator creates;
//! - a `Job` `<app>-provision-<hash>` running `provision`, so every stream and durable consumer
//!   exists before KEDA reads their lag (the hash changes with the Job's template, so a new image
//!   or function set is a new Job instead of an update of an immutable one);
//! - per Deployment (one per function, or one per `--group NAME=fn1,fn2`): the `Deployment`
//!   (no `replicas`: KEDA owns the count), a `PodDisruptionBudget`, a metrics `Service`, a
//!   `ServiceMonitor` with `--service-monitor`, and a KEDA `ScaledObject` with one
//!   `nats-jetstream` trigger per event function (KEDA allows one ScaledObject per workload, and
//!   takes the largest replica count its triggers ask for); a Deployment that holds request
//!   functions keeps at least one replica (a request to zero pods gets "no responders") and
//!   scales on a KEDA `cpu` trigger as well;
//! - with `--monitoring`: a prometheus-operator `PrometheusRule` `<app>-alerts` (the alerts of
//!   [`alerts`]) and a `ConfigMap` `<app>-grafana-dashboard` labelled `grafana_dashboard: "1"`
//!   (the dashboard of [`dashboard`]).
//!
//! `--emit prometheus-rules` prints the alerts as a plain Prometheus rules file instead, and
//! `--emit grafana-dashboard` the dashboard's JSON: `deploy/prometheus/` and `deploy/grafana/`
//! hold their output, as `deploy/k8s/` holds the manifests'.
//!
//! YAML is written by `serde_norway`, the maintained fork of the archived `serde_yaml` (same
//! emitter: strings that would read back as numbers or booleans are quoted, so KEDA's metadata
//! values stay strings).

mod alerts;
mod dashboard;
mod keda;
#[cfg(test)]
mod tests;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, FunctionConfig};
use crate::registry::Registry;
use crate::topology::derived_stream_name;

/// Flags of `manifests`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManifestsArgs {
    /// The container image the pods run, e.g. ghcr.io/acme/shop:1.4.2.
    #[arg(long, required_unless_present = "emit")]
    image: Option<String>,
    /// Prefix of every object's name and the app.kubernetes.io/name label [default: this
    /// binary's name].
    #[arg(long)]
    app: Option<String>,
    /// Namespace of every object [default: none, i.e. the namespace they are applied to].
    #[arg(long)]
    namespace: Option<String>,
    /// Run several functions in one Deployment `<app>-NAME` (repeatable); every other function
    /// gets a Deployment of its own.
    #[arg(long = "group", value_name = "NAME=FN,FN...")]
    groups: Vec<String>,
    /// NATS_URL of the pods (in the ConfigMap).
    #[arg(long, default_value = "nats://nats.nats.svc.cluster.local:4222")]
    nats_url: String,
    /// Where KEDA reads /jsz: host:port of the NATS monitoring port, no scheme. Point it at the
    /// headless service of the NATS helm chart so KEDA can reach each consumer's leader.
    #[arg(long, default_value = "nats-headless.nats.svc.cluster.local:8222")]
    nats_monitoring_endpoint: String,
    /// The NATS account of the streams, as KEDA names it (`$G` without accounts).
    #[arg(long, default_value = "$G")]
    nats_account: String,
    /// The most replicas KEDA may scale each Deployment to.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    max_replicas: u32,
    /// Also render a Prometheus-operator ServiceMonitor for each metrics Service.
    #[arg(long)]
    service_monitor: bool,
    /// Also render the alerts (a prometheus-operator PrometheusRule) and the Grafana dashboard
    /// (a ConfigMap labelled grafana_dashboard: "1").
    #[arg(long)]
    monitoring: bool,
    /// Print only this instead of the manifests: the alerts as a plain Prometheus rules file,
    /// or the Grafana dashboard's JSON.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
}

/// What `--emit` prints instead of the manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Emit {
    /// The alerting rules, as a Prometheus (and promtool) rules file.
    PrometheusRules,
    /// The Grafana dashboard's JSON model.
    GrafanaDashboard,
}

/// Everything the objects depend on besides the functions.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) image: String,
    pub(crate) app: String,
    pub(crate) namespace: Option<String>,
    pub(crate) nats_url: String,
    /// `NATS_JS_DOMAIN` of the pods (from the configuration `manifests` runs with).
    pub(crate) js_domain: Option<String>,
    pub(crate) monitoring_endpoint: String,
    pub(crate) account: String,
    pub(crate) max_replicas: u32,
    pub(crate) service_monitor: bool,
    /// The PrometheusRule and the Grafana dashboard's ConfigMap too.
    pub(crate) monitoring: bool,
    /// The drain budget (`JETFN_SHUTDOWN_TIMEOUT`); the grace period is set above it.
    pub(crate) shutdown_timeout: Duration,
    /// The command that rendered the output, written in its header.
    pub(crate) command_line: String,
}

/// What the objects need to know about one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Function {
    /// The function's name: its durable consumer's name.
    pub(crate) name: String,
    /// The stream its consumer is on; `None` for a request function (no consumer).
    pub(crate) stream: Option<String>,
    /// Its concurrent handler runs per pod: the lag one pod is sized for.
    pub(crate) max_workers: u32,
    /// An ordered function (`ordered_by`): one pod at a time pulls it, so its lag never asks
    /// for a second pod.
    pub(crate) ordered: bool,
}

impl Function {
    /// A request function: no consumer, answers core NATS requests.
    pub(crate) fn is_request(&self) -> bool {
        self.stream.is_none()
    }
}

/// One Deployment and the functions it runs (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) name: String,
    pub(crate) functions: Vec<Function>,
}

/// The manifests cannot be rendered from these functions and flags.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ManifestError {
    #[error("no function is selected")]
    NoFunctions,
    #[error("function `{function}`: no stream name can be derived from subject `{subject}`; set the function's `stream`")]
    NoStream { function: String, subject: String },
    #[error("--group {0:?}: expected NAME=FUNCTION[,FUNCTION...]")]
    MalformedGroup(String),
    #[error("--group {group}: unknown function `{function}`; selected functions: {known}")]
    UnknownFunction {
        group: String,
        function: String,
        known: String,
    },
    #[error("function `{0}` is in two --group flags")]
    GroupedTwice(String),
    #[error("{what} `{name}` is not a valid Kubernetes name: at most 63 characters of a-z, 0-9 and `-`, starting with a letter and ending with a letter or digit")]
    BadName { what: &'static str, name: String },
    #[error("two Deployments would be named `{0}`")]
    DuplicateName(String),
    #[error("cannot write YAML: {0}")]
    Yaml(String),
    #[error("cannot write JSON: {0}")]
    Json(String),
}

/// The stream a function's consumer is on, as far as can be known without a server: its
/// configured `stream`, else the stream the auto-create rule names after its subject.
pub(crate) fn stream_of(function: &FunctionConfig) -> Result<String, ManifestError> {
    function
        .stream
        .clone()
        .or_else(|| derived_stream_name(&function.subject))
        .ok_or_else(|| ManifestError::NoStream {
            function: function.name.clone(),
            subject: function.subject.clone(),
        })
}

/// Prints the manifests of the selected functions; exit 2 on bad configuration or flags.
pub(crate) fn command(args: &ManifestsArgs, config: &Config, registry: &Registry) -> ExitCode {
    let (functions, requests) = match config.selected(registry) {
        Ok(both) => both,
        Err(error) => return crate::command::config_error(error),
    };
    let rendered = functions
        .iter()
        .map(|f| {
            Ok(Function {
                name: f.name.clone(),
                stream: Some(stream_of(f)?),
                max_workers: f.max_workers,
                ordered: f.ordered_by.is_some(),
            })
        })
        .chain(requests.iter().map(|r| {
            Ok(Function {
                name: r.name.clone(),
                stream: None,
                max_workers: r.max_workers,
                ordered: false,
            })
        }))
        .collect::<Result<Vec<_>, ManifestError>>()
        .and_then(|mut functions| {
            functions.sort_by(|a, b| a.name.cmp(&b.name));
            let options = options(args, config);
            match args.emit {
                None => render(&options, &functions, &args.groups),
                Some(Emit::PrometheusRules) => render_rules(&options),
                Some(Emit::GrafanaDashboard) => dashboard::dashboard_json(),
            }
        });
    match rendered {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jetfn manifests: {error}");
            ExitCode::from(crate::command::EXIT_CONFIG)
        }
    }
}

fn options(args: &ManifestsArgs, config: &Config) -> Options {
    let argv: Vec<String> = std::env::args().collect();
    let binary = crate::command::binary_name();
    let flags = argv
        .iter()
        .skip_while(|arg| *arg != "manifests")
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ");
    Options {
        image: args.image.clone().unwrap_or_default(),
        app: args.app.clone().unwrap_or_else(|| binary.clone()),
        namespace: args.namespace.clone(),
        nats_url: args.nats_url.clone(),
        js_domain: config.nats.js_domain.clone(),
        monitoring_endpoint: args.nats_monitoring_endpoint.clone(),
        account: args.nats_account.clone(),
        max_replicas: args.max_replicas,
        service_monitor: args.service_monitor,
        monitoring: args.monitoring,
        shutdown_timeout: config.shutdown_timeout,
        command_line: format!("{binary} {flags}"),
    }
}

/// The whole YAML stream: a header naming the command, then one document per object.
pub(crate) fn render(
    options: &Options,
    functions: &[Function],
    groups: &[String],
) -> Result<String, ManifestError> {
    if functions.is_empty() {
        return Err(ManifestError::NoFunctions);
    }
    check_name("--app", &options.app)?;
    let workloads = plan(&options.app, functions, groups)?;
    let mut objects = vec![
        workload::config_map(options),
        workload::provision_job(options, functions)?,
    ];
    for w in &workloads {
        objects.push(workload::deployment(options, w));
        objects.push(workload::disruption_budget(options, w));
        objects.push(workload::service(options, w));
        if options.service_monitor {
            objects.push(workload::service_monitor(options, w));
        }
        objects.push(keda::scaled_object(options, w));
    }
    if options.monitoring {
        objects.push(alerts::prometheus_rule(options));
        objects.push(dashboard::config_map(options)?);
    }
    let mut out = header(options);
    for object in &objects {
        out.push_str("---\n");
        out.push_str(&yaml(object)?);
    }
    Ok(out)
}

/// The alerts as a plain rules file (`rule_files:` of a Prometheus, `promtool test rules`).
pub(crate) fn render_rules(options: &Options) -> Result<String, ManifestError> {
    Ok(header(options) + &yaml(&alerts::groups())?)
}

/// The first lines of every rendered YAML file: the command that made it.
fn header(options: &Options) -> String {
    format!(
        "# Generated by `{}`.\n# Do not edit: change the functions or the flags and render again.\n",
        options.command_line
    )
}

fn yaml(object: &Value) -> Result<String, ManifestError> {
    serde_norway::to_string(object).map_err(|e| ManifestError::Yaml(e.to_string()))
}

/// Splits the functions into Deployments: one per `--group`, one for each other function;
/// sorted by name.
pub(crate) fn plan(
    app: &str,
    functions: &[Function],
    groups: &[String],
) -> Result<Vec<Workload>, ManifestError> {
    let by_name: BTreeMap<&str, &Function> =
        functions.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut grouped = BTreeSet::new();
    let mut workloads = Vec::new();
    for spec in groups {
        let malformed = || ManifestError::MalformedGroup(spec.clone());
        let (group, members) = spec.split_once('=').ok_or_else(malformed)?;
        let mut members: Vec<Function> = members
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                let function = by_name
                    .get(m)
                    .ok_or_else(|| ManifestError::UnknownFunction {
                        group: group.to_owned(),
                        function: m.to_owned(),
                        known: by_name.keys().copied().collect::<Vec<_>>().join(", "),
                    })?;
                if !grouped.insert(m) {
                    return Err(ManifestError::GroupedTwice(m.to_owned()));
                }
                Ok((*function).clone())
            })
            .collect::<Result<_, _>>()?;
        if members.is_empty() {
            return Err(malformed());
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        check_name("--group", group)?;
        workloads.push(Workload {
            name: format!("{app}-{group}"),
            functions: members,
        });
    }
    for function in functions
        .iter()
        .filter(|f| !grouped.contains(f.name.as_str()))
    {
        workloads.push(Workload {
            name: format!("{app}-{}", kubernetes_name(&function.name)),
            functions: vec![function.clone()],
        });
    }
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in workloads.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(ManifestError::DuplicateName(pair[0].name.clone()));
        }
    }
    for w in &workloads {
        check_name("Deployment", &w.name)?;
    }
    Ok(workloads)
}

/// `reserve_inventory` -> `reserve-inventory`.
pub(crate) fn kubernetes_name(name: &str) -> String {
    name.to_lowercase().replace('_', "-")
}

/// A DNS-1035 label: what a Service name (the strictest of our objects) must be.
fn check_name(what: &'static str, name: &str) -> Result<(), ManifestError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ManifestError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

/// The metadata every object gets: name, namespace when one is set, labels.
fn metadata(options: &Options, name: &str, labels: Value) -> Value {
    let mut metadata = serde_json::json!({ "name": name, "labels": labels });
    if let (Some(namespace), Some(map)) = (&options.namespace, metadata.as_object_mut()) {
        map.insert("namespace".to_owned(), Value::from(namespace.as_str()));
    }
    metadata
}

/// An argument as a POSIX shell reads it back.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// FNV-1a, folded to 32 bits: a short, stable fingerprint (the std hasher may change between
/// Rust releases, which would rename the provision Job).
fn fingerprint(bytes: &[u8]) -> u32 {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // Truncation intended: fold the two halves.
    ((hash >> 32) ^ (hash & 0xffff_ffff)) as u32
}

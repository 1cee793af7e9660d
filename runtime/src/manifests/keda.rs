//! The KEDA `ScaledObject` of a workload: one `nats-jetstream` trigger per function.
//!
//! KEDA reads `GET /jsz?acc=<account>&config=true&consumers=true` from the NATS monitoring port
//! and takes a consumer's lag as `num_pending + num_ack_pending`: messages not yet delivered plus
//! messages delivered but not yet acknowledged. It asks for `ceil(lag / lagThreshold)` replicas
//! (between `minReplicaCount` and `maxReplicaCount`), the most any trigger asks for.
//!
//! `lagThreshold` is the function's `max_workers`: one pod runs that many handlers at once and
//! holds about that many unacknowledged messages, so one pod is asked for each `max_workers`
//! messages of lag. `activationLagThreshold` is `0`: any lag wakes a Deployment at zero replicas.
//!
//! An ordered function (`ordered_by`) is pulled by one pod at a time (the holder of its lease):
//! more pods add standbys, not throughput. Its trigger reads the same consumer (its lag counts
//! the messages held behind their keys too: they are delivered, not acknowledged) with
//! [`ORDERED_LAG_THRESHOLD`], so any lag asks for exactly one pod; the other functions of the
//! workload, if any, decide beyond that.
//!
//! A workload with request functions has no lag to read for them: it keeps `minReplicaCount: 1`
//! (a request to zero pods gets "no responders") and adds a `cpu` trigger at
//! [`CPU_UTILIZATION`] percent of the pods' CPU request.

use serde_json::{json, Value};

use super::{kubernetes_name, metadata, Function, Options, Workload};

/// The average CPU use, in percent of the pods' request, above which a workload with request
/// functions gets more pods.
pub(super) const CPU_UTILIZATION: u32 = 70;

/// The lag threshold of an ordered function: more than any consumer holds, so its lag asks for
/// one pod and never two.
pub(super) const ORDERED_LAG_THRESHOLD: u32 = 1_000_000_000;

/// The lag one pod of `function` is sized for.
pub(super) fn lag_threshold(function: &Function) -> u32 {
    if function.ordered {
        return ORDERED_LAG_THRESHOLD;
    }
    function.max_workers
}

/// Scales the workload's Deployment between 0 and `--max-replicas` on its functions' lag; one
/// replica when KEDA cannot read the lag (`fallback`).
pub(super) fn scaled_object(options: &Options, w: &Workload) -> Value {
    let mut triggers: Vec<Value> = w
        .functions
        .iter()
        .filter_map(|function| Some((function, function.stream.as_deref()?)))
        .map(|(function, stream)| {
            json!({
                "type": "nats-jetstream",
                "name": kubernetes_name(&function.name),
                "metadata": {
                    "natsServerMonitoringEndpoint": options.monitoring_endpoint,
                    "account": options.account,
                    "stream": stream,
                    "consumer": function.name,
                    "lagThreshold": lag_threshold(function).to_string(),
                    "activationLagThreshold": "0",
                },
            })
        })
        .collect();
    let serves_requests = w.functions.iter().any(Function::is_request);
    if serves_requests {
        triggers.push(json!({
            "type": "cpu",
            "name": "cpu",
            "metricType": "Utilization",
            "metadata": { "value": CPU_UTILIZATION.to_string() },
        }));
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(options, &w.name, json!({
            "app.kubernetes.io/name": options.app,
            "app.kubernetes.io/managed-by": "jetfn",
            "app.kubernetes.io/instance": w.name,
        })),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": w.name },
            "minReplicaCount": u32::from(serves_requests),
            "maxReplicaCount": options.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "fallback": { "failureThreshold": 3, "replicas": 1 },
            "triggers": triggers,
        },
    })
}

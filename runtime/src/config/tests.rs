use super::*;
use crate::codec::PayloadKind;
use crate::registry::{Attributes, HandlerFuture, HandlerSpec, Location, PayloadSpec, Registry};
use crate::{Context, Incoming};

fn noop(_: Context, _: Incoming) -> HandlerFuture {
    Box::pin(async { Ok(()) })
}

fn json() -> PayloadSpec {
    PayloadSpec {
        type_name: "serde_json::Value",
        kind: PayloadKind::Json,
        schema: None,
    }
}

const fn spec(name: &'static str, attrs: Attributes) -> HandlerSpec {
    HandlerSpec {
        name,
        subject: "shop.orders.created",
        attrs,
        handler: noop,
        batch: None,
        payload: json,
        states: &[],
        location: Location {
            module_path: "tests",
            file: "tests.rs",
            line: 1,
        },
    }
}

static RESERVE: HandlerSpec = spec("reserve_inventory", Attributes::NONE);
static CHARGE: HandlerSpec = spec(
    "charge_payment",
    Attributes {
        max_deliver: Some(8),
        backoff: Some((Duration::from_millis(100), Duration::from_secs(5))),
        ..Attributes::NONE
    },
);

fn registry() -> Registry {
    Registry::from_specs([&RESERVE, &CHARGE]).expect("unique")
}

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().copied())
}

#[test]
fn defaults() {
    let config = load(&[]).expect("valid");
    assert_eq!(config.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
    assert_eq!(config.nats.urls.len(), 1);
    assert!(config.select.is_none());
    assert!(config.auto_create_streams);
    let functions = config.functions(&registry()).expect("valid");
    let reserve = &functions[1];
    assert_eq!(reserve.name, "reserve_inventory");
    assert_eq!(reserve.max_deliver, 5);
    assert_eq!(reserve.ack_wait, Duration::from_secs(30));
    assert_eq!(reserve.dlq, "jetfn.dlq.reserve_inventory");
}

#[test]
fn attributes_then_overrides() {
    let config = load(&[
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "12"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__ACK_WAIT", "90s"),
    ])
    .expect("valid");
    let functions = config.functions(&registry()).expect("valid");
    let charge = &functions[0];
    assert_eq!(charge.max_deliver, 12, "override beats attribute");
    assert_eq!(charge.ack_wait, Duration::from_secs(90));
    assert_eq!(
        charge.backoff.initial,
        Duration::from_millis(100),
        "attribute kept"
    );
}

#[test]
fn selection() {
    let config = load(&[("JETFN_FUNCTIONS", " charge_payment ,")]).expect("valid");
    let names: Vec<_> = config
        .functions(&registry())
        .expect("valid")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["charge_payment"]);
    let all = load(&[("JETFN_FUNCTIONS", "*")]).expect("valid");
    assert_eq!(all.functions(&registry()).expect("valid").len(), 2);
}

#[test]
fn unknown_function_lists_the_known_ones() {
    let config = load(&[("JETFN_FUNCTIONS", "charge_payment,refund")]).expect("valid");
    let error = config.functions(&registry()).expect_err("unknown");
    assert!(matches!(&error, ConfigError::UnknownFunction { name, .. } if name == "refund"));
    assert_eq!(
        error.to_string(),
        "JETFN_FUNCTIONS (select): unknown function `refund`; known functions: charge_payment, reserve_inventory"
    );
    let config = load(&[("JETFN__FUNCTIONS__REFUND__MAX_DELIVER", "3")]).expect("valid");
    assert!(matches!(
        config.functions(&registry()),
        Err(ConfigError::UnknownFunction { .. })
    ));
}

#[test]
fn the_ping_interval_defaults_to_eight_seconds_and_is_configurable() {
    let config = load(&[]).expect("defaults");
    assert_eq!(config.nats.ping_interval, super::DEFAULT_PING_INTERVAL);
    assert_eq!(config.nats.ping_interval, Duration::from_secs(8));
    let config = load(&[("JETFN_NATS_PING_INTERVAL", "2s")]).expect("valid");
    assert_eq!(config.nats.ping_interval, Duration::from_secs(2));
}

#[test]
fn the_jetstream_domain_is_none_unless_set() {
    assert_eq!(load(&[]).expect("defaults").nats.js_domain, None);
    let config = load(&[("NATS_JS_DOMAIN", "hub")]).expect("valid");
    assert_eq!(config.nats.js_domain.as_deref(), Some("hub"));
    // Empty is unset, as for every other variable.
    assert_eq!(
        load(&[("NATS_JS_DOMAIN", "")])
            .expect("valid")
            .nats
            .js_domain,
        None
    );
}

#[test]
fn bad_values_name_their_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("JETFN_SHUTDOWN_TIMEOUT", "soon", "JETFN_SHUTDOWN_TIMEOUT"),
        ("JETFN_HTTP_ADDR", "localhost", "JETFN_HTTP_ADDR"),
        ("JETFN_LOG_FORMAT", "xml", "JETFN_LOG_FORMAT"),
        (
            "JETFN_AUTO_CREATE_STREAMS",
            "maybe",
            "JETFN_AUTO_CREATE_STREAMS",
        ),
        ("NATS_URL", "nats://exa mple:x", "NATS_URL"),
        ("NATS_CA", "/no/such/ca.pem", "NATS_CA"),
        ("NATS_USER", "alice", "NATS_PASSWORD"),
        (
            "JETFN_NATS_PING_INTERVAL",
            "often",
            "JETFN_NATS_PING_INTERVAL",
        ),
        (
            "JETFN_NATS_PING_INTERVAL",
            "10ms",
            "JETFN_NATS_PING_INTERVAL",
        ),
        ("NATS_JS_DOMAIN", "hub.east", "NATS_JS_DOMAIN"),
        ("NATS_JS_DOMAIN", "hub east", "NATS_JS_DOMAIN"),
        ("NATS_JS_DOMAIN", "*", "NATS_JS_DOMAIN"),
    ];
    for (var, value, named) in cases {
        let error = load(&[(var, value)]).expect_err(var);
        assert!(
            matches!(error, ConfigError::Invalid { .. }),
            "{var}: {error:?}"
        );
        assert!(error.to_string().starts_with(named), "{var}: {error}");
    }
}

#[test]
fn bad_overrides_name_their_variable() {
    let cases: &[(&str, &str)] = &[
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "zero"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "0"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__BACKOFF", "5s..1s"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__TIMEOUT", "0s"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__SUBJECT", "shop..x"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__RETRIES", "3"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__MIN_WORKERS", "50"),
    ];
    for (var, value) in cases {
        let error = load(&[(var, value)])
            .and_then(|config| config.functions(&registry()))
            .expect_err(var);
        let text = error.to_string();
        assert!(
            text.starts_with("JETFN__FUNCTIONS__CHARGE_PAYMENT__"),
            "{var}: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

#[test]
fn file_then_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jetfn.toml");
    std::fs::write(
        &path,
        "http_addr = \"127.0.0.1:9000\"\nselect = [\"reserve_inventory\"]\n\
         [functions.reserve_inventory]\nmax_deliver = 7\ntimeout = \"10s\"\n",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8");
    let config = load(&[
        ("JETFN_CONFIG", path),
        ("JETFN__FUNCTIONS__RESERVE_INVENTORY__TIMEOUT", "20s"),
    ])
    .expect("valid");
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:9000");
    let functions = config.functions(&registry()).expect("valid");
    assert_eq!(functions.len(), 1);
    assert_eq!(functions[0].max_deliver, 7);
    assert_eq!(
        functions[0].timeout,
        Duration::from_secs(20),
        "env beats file"
    );

    let missing = load(&[("JETFN_CONFIG", "/no/such/jetfn.toml")]).expect_err("missing");
    assert!(missing.to_string().starts_with("JETFN_CONFIG"), "{missing}");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = load(&[
        ("NATS_USER", "alice"),
        ("NATS_PASSWORD", "hunter2"),
        ("NATS_TOKEN", "s3cret-token"),
    ])
    .expect("valid");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cret-token"),
        "{debug}"
    );
    assert!(debug.contains("alice"));
}

#[test]
fn otlp_export_follows_the_standard_variables() {
    assert_eq!(load(&[]).expect("valid").otlp, None);
    let http = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).expect("valid");
    assert_eq!(
        http.otlp,
        Some(OtlpConfig {
            endpoint: "http://collector:4318/v1/traces".into(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            certificate: None,
        })
    );
    let grpc = load(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "shop"),
    ]);
    #[cfg(feature = "otlp-grpc")]
    {
        let grpc = grpc.expect("valid");
        assert_eq!(
            grpc.otlp.map(|o| (o.endpoint, o.protocol)),
            Some(("http://collector:4317".into(), OtlpProtocol::Grpc))
        );
        assert_eq!(grpc.service_name.as_deref(), Some("shop"));
    }
    #[cfg(not(feature = "otlp-grpc"))]
    {
        // One line naming the variable and the feature that brings gRPC.
        let line = grpc.expect_err("grpc needs its feature").to_string();
        assert!(line.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL"), "{line}");
        assert!(line.contains("`otlp-grpc`"), "{line}");
    }
    let traces = load(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom"),
    ])
    .expect("valid");
    assert_eq!(
        traces.otlp.map(|o| o.endpoint).as_deref(),
        Some("http://b:4318/custom")
    );
    let off = load(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ])
    .expect("valid");
    assert_eq!(off.otlp, None);
    let bad = load(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
    ]);
    assert!(bad
        .expect_err("bad protocol")
        .to_string()
        .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL"));
}

#[test]
fn otlp_compression_none_is_read_and_gzip_is_refused_by_name() {
    let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    let none = load(&[base, ("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]).expect("valid");
    assert!(none.otlp.is_some());
    let line = load(&[base, ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")])
        .expect_err("gzip is not supported")
        .to_string();
    assert!(
        line.starts_with("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") && line.contains("\"gzip\""),
        "{line}"
    );
}

#[test]
fn otlp_certificate_names_a_file_or_exits_naming_the_variable() {
    let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318");
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "not checked here: the exporter reads it").expect("write");
    let pem_text = pem.to_str().expect("utf-8 path");
    let config = load(&[base, ("OTEL_EXPORTER_OTLP_CERTIFICATE", pem_text)]).expect("valid");
    assert_eq!(config.otlp.and_then(|o| o.certificate), Some(pem.clone()));
    let missing = dir.path().join("missing.pem");
    let line = load(&[
        base,
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            missing.to_str().expect("utf-8 path"),
        ),
    ])
    .expect_err("a missing file")
    .to_string();
    assert!(
        line.starts_with("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") && line.contains("missing.pem"),
        "{line}"
    );
}

#[test]
fn otlp_headers_and_timeout_follow_the_standard_variables() {
    let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    let config = load(&[
        base,
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            " api-key = s3cr%3Dt ,x-tenant=shop, ",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
    ])
    .expect("valid")
    .otlp
    .expect("export on");
    assert_eq!(
        config.headers,
        [
            ("api-key".to_owned(), "s3cr=t".to_owned()),
            ("x-tenant".to_owned(), "shop".to_owned())
        ]
    );
    assert_eq!(config.timeout, Duration::from_millis(2500));
    // The traces-specific variables win.
    let config = load(&[
        base,
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000"),
    ])
    .expect("valid")
    .otlp
    .expect("export on");
    assert_eq!(config.headers, [("b".to_owned(), "2".to_owned())]);
    assert_eq!(config.timeout, Duration::from_secs(3));
    // Header values are often credentials: names only in debug output.
    let debug = format!(
        "{:?}",
        load(&[base, ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hunter2")]).expect("valid")
    );
    assert!(
        debug.contains("api-key") && !debug.contains("hunter2"),
        "{debug}"
    );
    for (key, value) in [
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "=value"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=%ff"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
    ] {
        let error = load(&[base, (key, value)]).expect_err(value).to_string();
        assert!(error.starts_with(key), "{key}={value}: {error}");
    }
}

static NIGHTLY: HandlerSpec = HandlerSpec {
    name: "nightly",
    subject: "jetfn.tick.nightly",
    ..spec(
        "nightly",
        Attributes {
            schedule: Some("0 0 3 * * *"),
            ..Attributes::NONE
        },
    )
};

static EVERY: HandlerSpec = spec(
    "every",
    Attributes {
        schedule: Some("@every 30s"),
        ..Attributes::NONE
    },
);

#[test]
fn a_scheduled_function_reads_its_ticks_with_a_ttl_of_its_period_at_most_an_hour() {
    let registry = Registry::from_specs([&NIGHTLY, &EVERY]).expect("unique");
    let functions = load(&[])
        .expect("valid")
        .functions(&registry)
        .expect("valid");
    let (every, nightly) = (&functions[0], &functions[1]);
    assert_eq!(nightly.subject, "jetfn.tick.nightly");
    assert_eq!(nightly.stream.as_deref(), Some("JETFN_SCHEDULES"));
    assert_eq!(
        nightly.schedule_ttl,
        Some(Duration::from_secs(3600)),
        "capped"
    );
    assert_eq!(every.subject, "jetfn.tick.every");
    assert_eq!(
        every.schedule_ttl,
        Some(Duration::from_secs(30)),
        "the period"
    );
    let overridden = load(&[
        ("JETFN__FUNCTIONS__EVERY__SCHEDULE", "@every 5s"),
        ("JETFN__FUNCTIONS__EVERY__SCHEDULE_TTL", "2s"),
    ])
    .expect("valid")
    .functions(&registry)
    .expect("valid");
    assert_eq!(overridden[0].schedule.as_deref(), Some("@every 5s"));
    assert_eq!(overridden[0].schedule_ttl, Some(Duration::from_secs(2)));
    let error = load(&[("JETFN__FUNCTIONS__EVERY__SCHEDULE", "@every 0s")])
        .expect("valid")
        .functions(&registry)
        .expect_err("malformed");
    assert!(
        error
            .to_string()
            .starts_with("JETFN__FUNCTIONS__EVERY__SCHEDULE (functions.every.schedule)"),
        "{error}"
    );
}

#[test]
fn once_retention_defaults_to_seven_days_and_must_exceed_the_retry_schedule() {
    let functions = load(&[])
        .and_then(|config| config.functions(&registry()))
        .expect("valid");
    let charge = &functions[0];
    assert_eq!(charge.once_retention, Duration::from_secs(7 * 24 * 3600));
    // 8 deliveries of at most max(timeout 5m, ack_wait 30s), and the 7 delays between them
    // (100ms doubling up to 5s) with 10% jitter.
    assert_eq!(
        charge.retry_span(),
        Duration::from_secs(8 * 300) + Duration::from_millis(11_300).mul_f64(1.1)
    );

    let longer = load(&[("JETFN__FUNCTIONS__CHARGE_PAYMENT__ONCE_RETENTION", "1h")])
        .and_then(|config| config.functions(&registry()))
        .expect("valid");
    assert_eq!(longer[0].once_retention, Duration::from_secs(3600));

    let error = load(&[("JETFN__FUNCTIONS__CHARGE_PAYMENT__ONCE_RETENTION", "40m")])
        .and_then(|config| config.functions(&registry()))
        .expect_err("40m is under the retry schedule");
    let text = error.to_string();
    assert!(
        text.starts_with("JETFN__FUNCTIONS__CHARGE_PAYMENT__ONCE_RETENTION"),
        "{text}"
    );
    assert!(
        text.contains("must exceed the function's whole retry schedule"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn a_misspelled_key_gets_a_suggestion() {
    let line = load(&[("JETFN__FUNCTIONS__RESERVE_INVENTORY__MAX_DELIVERY", "3")])
        .and_then(|config| config.functions(&registry()))
        .expect_err("unknown key")
        .to_string();
    assert!(line.contains("did you mean `max_deliver`?"), "{line}");
    let line = load(&[("JETFN__FUNCTIONS__RESERVE_INVENTORY__RETRIES", "3")])
        .and_then(|config| config.functions(&registry()))
        .expect_err("unknown key")
        .to_string();
    assert!(!line.contains("did you mean"), "{line}");
}

#[test]
fn every_override_key_of_the_grammar_is_read() {
    // The keys the error message lists are the keys `apply_override` takes.
    let example = |key: &str| match key {
        "subject" => "orders.other",
        "dlq" => "orders.dead",
        "stream" => "ORDERS",
        "schedule" => "@every 30s",
        "backoff" => "1s..2s",
        "ack_wait" | "timeout" | "breaker_cooldown" | "prefetch" | "batch_wait"
        | "schedule_ttl" => "1s",
        // Above the function's whole retry schedule.
        "once_retention" => "30d",
        _ => "3",
    };
    for key in jetfn_grammar::keys::event_override_keys() {
        if matches!(key, "batch" | "batch_wait" | "schedule_ttl") {
            continue; // They apply to batch or scheduled functions only.
        }
        let var = format!(
            "JETFN__FUNCTIONS__RESERVE_INVENTORY__{}",
            key.to_uppercase()
        );
        let read = load(&[(var.as_str(), example(key))]).and_then(|c| c.functions(&registry()));
        assert!(read.is_ok(), "{key}: {read:?}");
    }
}

proptest::proptest! {
    /// The configuration reads durations and schedules with the grammar the macro checks its
    /// attributes with: the same strings are accepted, to the same value, and rejected.
    #[test]
    fn durations_and_schedules_agree_with_the_macro_grammar(
        text in "[ ]?[0-9]{0,3}(\\.[0-9])?[ ]?(ns|us|ms|s|sec|m|min|h|d|w|x|)( [0-9]{1,2}(ms|s|us))?",
    ) {
        let config = super::value::duration("k", &text).ok();
        proptest::prop_assert_eq!(config, jetfn_grammar::duration::parse_duration(&text).ok());
        let every = format!("@every {text}");
        let schedule = every.parse::<crate::schedule::Expr>().ok().map(|e| e.server_form());
        let grammar = every
            .parse::<jetfn_grammar::schedule::Schedule>()
            .ok()
            .map(|s| s.server_form());
        proptest::prop_assert_eq!(schedule, grammar);
    }
}

#[test]
fn sub_millisecond_durations_are_refused_as_the_macro_refuses_them() {
    let line = load(&[("JETFN__FUNCTIONS__RESERVE_INVENTORY__TIMEOUT", "500us")])
        .and_then(|config| config.functions(&registry()))
        .expect_err("500us")
        .to_string();
    assert!(line.contains("whole milliseconds"), "{line}");
}

#[test]
fn the_log_format_is_read_in_any_case() {
    for (text, format) in [
        ("JSON", LogFormat::Json),
        ("Json", LogFormat::Json),
        ("TEXT", LogFormat::Text),
    ] {
        let config = load(&[("JETFN_LOG_FORMAT", text)]).expect("valid");
        assert_eq!(config.log_format, format, "{text}");
    }
    assert!(load(&[("JETFN_LOG_FORMAT", "yaml")]).is_err());
}

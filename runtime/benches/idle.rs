//! Idle cost: one runtime (this process, the pod) with 200 event functions and nothing to do.
//! Prints how long `/ready` took from the start (and again for a second pod started after the
//! first stopped, its consumers existing), then, over a 30 s window that begins 2 s after
//! ready: the JetStream API requests per second (the server's `/jsz` `api.total` delta), the
//! server's consumers per function (`/jsz`), the nats-server's CPU (`/proc/<pid>/stat`), this
//! process's CPU and its RSS at the end. Not part of `cargo test`.
//!
//! Then cold starts: the benchmark execs itself as a pod running one function
//! (`jetfn::main()`, `JETFN_FUNCTIONS=idle_template`) while a message waits on its subject, and
//! times exec → that message's ack (seen on the ack subject by a plain subscriber) and exec →
//! `/ready` answering 200; the first pod creates its consumer, the next ones bind it (a pod
//! scaled from zero). SIGTERM after each, and the next waits for the exit.
//!
//! ```text
//! cargo bench -p jetfn --features testing --bench idle
//! JETFN_IDLE_FUNCTIONS=50 JETFN_IDLE_WINDOW=1m cargo bench -p jetfn --features testing --bench idle
//! ```
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `JETFN_IDLE_FUNCTIONS` | event functions in the pod | `200` |
//! | `JETFN_IDLE_WINDOW` | how long the idle pod is measured | `30s` |
//! | `JETFN_IDLE_COLD_STARTS` | pods exec'd for the cold-start rows | `7` |
//!
//! The functions are copies of one registered handler, each on its own subject (`idle.<n>`) of one
//! stream (`IDLE`), as a Deployment of many functions would bind them.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use jetfn::__private::HandlerSpec;
use jetfn::testing::NatsServer;
use jetfn::{
    event_handler, Config, Context, Event, HandlerError, Registry, Runtime, RuntimeHandle,
};
use jetfn_test_support::http_get_with;

/// After ready and before the window: the start-up's own requests are not idle cost.
const SETTLE: Duration = Duration::from_secs(2);
/// Set when the benchmark execs itself as a pod for the cold-start rows.
const POD: &str = "JETFN_IDLE_POD";

#[derive(serde::Deserialize)]
struct Nothing {}

#[event_handler(subject = "idle.template")]
async fn idle_template(_ctx: Context, _event: Event<Nothing>) -> Result<(), HandlerError> {
    Ok(())
}

/// `name`'s value parsed by `parse`, or `default` when unset; a value that does not parse ends
/// the benchmark naming the variable (a typo must not measure the default silently).
fn env_or<T>(name: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(value) => parse(&value).unwrap_or_else(|| panic!("{name}: cannot parse {value:?}")),
    }
}

/// `functions` copies of the template, `idle_<n>` on `idle.<n>`.
fn registry(functions: usize) -> Registry {
    let template = Registry::collect()
        .expect("registry")
        .get("idle_template")
        .expect("the template handler");
    let specs = (0..functions).map(|n| {
        let spec = HandlerSpec {
            name: Box::leak(format!("idle_{n:03}").into_boxed_str()),
            subject: Box::leak(format!("idle.{n:03}").into_boxed_str()),
            attrs: template.attrs,
            handler: template.handler,
            batch: template.batch,
            payload: template.payload,
            states: template.states,
            location: template.location,
        };
        &*Box::leak(Box::new(spec))
    });
    Registry::from_specs(specs).expect("distinct names")
}

/// CPU time of a process (user + system) from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// The server's `/jsz`: (API requests so far, consumers).
async fn jsz(server: &NatsServer) -> (u64, u64) {
    let addr = format!("127.0.0.1:{}", server.monitor_port())
        .parse()
        .expect("monitor address");
    let response = http_get_with(addr, "/jsz", &[]).await.expect("/jsz");
    let jsz: serde_json::Value = serde_json::from_str(&response.body).expect("/jsz JSON");
    let number = |value: &serde_json::Value| value.as_u64().expect("a count in /jsz");
    (number(&jsz["api"]["total"]), number(&jsz["consumers"]))
}

fn main() -> ExitCode {
    if std::env::var_os(POD).is_some() {
        return jetfn::main();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench());
    ExitCode::SUCCESS
}

async fn bench() {
    let functions: usize = env_or("JETFN_IDLE_FUNCTIONS", 200, |n| n.parse().ok());
    let window = env_or("JETFN_IDLE_WINDOW", Duration::from_secs(30), |d| {
        humantime::parse_duration(d).ok()
    });
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "IDLE".to_owned(),
        subjects: vec!["idle.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let config = Config::from_vars([
        ("NATS_URL", server.url()),
        ("JETFN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .expect("config");
    let registry = registry(functions);
    let (runtime, ready) = start(&config, &registry).await;
    tokio::time::sleep(SETTLE).await;

    let server_pid = server.pid().expect("nats-server pid").to_string();
    let (api_before, _) = jsz(&server).await;
    let (server_cpu, pod_cpu) = (cpu_time(&server_pid), cpu_time("self"));
    let measured = Instant::now();
    tokio::time::sleep(window).await;
    let seconds = measured.elapsed().as_secs_f64();
    let (api_after, consumers) = jsz(&server).await;
    let server_cpu = cpu_time(&server_pid) - server_cpu;
    let pod_cpu = cpu_time("self") - pod_cpu;
    let rss = rss_mib();
    let api_rate = (api_after - api_before) as f64 / seconds;

    runtime.stop().await;
    // A pod that starts where the consumers exist already (a restart, a new replica).
    let (runtime, ready_again) = start(&config, &registry).await;
    runtime.stop().await;

    println!(
        "| functions | ready | ready, consumers existing | API req/s | per function | consumers per function | server CPU | pod CPU | pod RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {functions} | {} ms | {} ms | {api_rate:.1} | {:.3} | {:.3} | {:.2} % | {:.2} % | {:.0} MiB |",
        ready.as_millis(),
        ready_again.as_millis(),
        api_rate / functions as f64,
        consumers as f64 / functions as f64,
        100.0 * server_cpu.as_secs_f64() / seconds,
        100.0 * pod_cpu.as_secs_f64() / seconds,
        rss,
    );

    let runs: usize = env_or("JETFN_IDLE_COLD_STARTS", 7, |n| n.parse().ok());
    let starts = cold_starts(&server, runs.max(2)).await;
    let (first, rest) = starts.split_first().expect("at least two");
    let median = |pick: fn(&ColdStart) -> Duration| {
        let mut times: Vec<Duration> = rest.iter().map(pick).collect();
        times.sort();
        times[times.len() / 2]
    };
    println!();
    println!("| cold start, exec → | first pod (creates its consumer) | next pods (consumer exists), median of {} |", rest.len());
    println!("|---|---|---|");
    println!(
        "| a waiting message acked | {:.1} ms | {:.1} ms |",
        ms(first.acked),
        ms(median(|s| s.acked))
    );
    println!(
        "| `/ready` 200 | {:.1} ms | {:.1} ms |",
        ms(first.ready),
        ms(median(|s| s.ready))
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One exec'd pod: from exec to its ack of the waiting message, and to `/ready`.
struct ColdStart {
    acked: Duration,
    ready: Duration,
}

/// `runs` pods exec'd one after the other, each with one message waiting for it.
async fn cold_starts(server: &NatsServer, runs: usize) -> Vec<ColdStart> {
    use futures::StreamExt;
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut acks = client
        .subscribe("$JS.ACK.IDLE.idle_template.>")
        .await
        .expect("subscribe to the acks");
    client.flush().await.expect("flush");
    let exe = std::env::current_exe().expect("the benchmark's path");
    let mut starts = Vec::with_capacity(runs);
    for _ in 0..runs {
        js.publish("idle.template", "{}".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        let mut pod = tokio::process::Command::new(&exe)
            .env(POD, "1")
            .env("NATS_URL", server.url())
            .env("JETFN_FUNCTIONS", "idle_template")
            .env("JETFN_HTTP_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("exec the pod");
        let acked = async {
            tokio::time::timeout(Duration::from_secs(30), acks.next())
                .await
                .expect("the waiting message acked within 30 s")
                .expect("the ack subscription");
            started.elapsed()
        };
        let ready = async {
            loop {
                let ready = http_get_with(addr, "/ready", &[]).await;
                if matches!(ready, Ok(ref response) if response.status == 200) {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "not ready within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let (acked, ready) = tokio::join!(acked, ready);
        let pid = pod.id().expect("the pod's pid").to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(term.success(), "SIGTERM to the pod");
        let exit = tokio::time::timeout(Duration::from_secs(30), pod.wait())
            .await
            .expect("the pod exits within 30 s of SIGTERM")
            .expect("the pod's exit status");
        assert!(exit.success(), "the pod exits 0 after SIGTERM: {exit}");
        starts.push(ColdStart { acked, ready });
    }
    starts
}

/// Starts a runtime of `registry`; returns it and how long `/ready` took to answer 200.
async fn start(config: &Config, registry: &Registry) -> (RuntimeHandle, Duration) {
    let runtime = Runtime::new(config.clone(), registry).expect("functions");
    let started = Instant::now();
    let runtime = runtime.start().await.expect("runtime starts");
    loop {
        let ready = http_get_with(runtime.http_addr(), "/ready", &[]).await;
        if matches!(ready, Ok(ref response) if response.status == 200) {
            return (runtime, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

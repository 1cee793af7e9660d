//! The benchmark's knobs: `--bench` for the full run, environment variables and arguments.

use std::time::Duration;

use crate::TUNED_WORKERS;

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) full: bool,
    pub(crate) messages: u64,
    pub(crate) runs: usize,
    pub(crate) latency_messages: u64,
    pub(crate) rate: u64,
    pub(crate) max_workers: Option<u32>,
    pub(crate) max_ack_pending: u32,
    pub(crate) only: Option<Contender>,
    pub(crate) extra: Vec<(String, String)>,
    /// Messages of the I/O-bound row (a handler awaiting 10 ms).
    pub(crate) io_messages: u64,
}

/// One side of the throughput comparison, to run alone (for profiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    Raw,
    Peer,
    Jetfn,
}

impl Settings {
    /// `--bench` (what `cargo bench` passes) selects the full run; env variables, then
    /// arguments, override the sizes.
    pub(crate) fn from_env_and_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench");
        let mut settings = if full {
            Self {
                full,
                messages: 200_000,
                runs: 3,
                latency_messages: 20_000,
                rate: 2_000,
                max_workers: Some(TUNED_WORKERS),
                max_ack_pending: 20_000,
                only: None,
                extra: Vec::new(),
                io_messages: 4_000,
            }
        } else {
            Self {
                full,
                messages: 2_000,
                runs: 1,
                latency_messages: 500,
                rate: 2_000,
                max_workers: Some(TUNED_WORKERS),
                max_ack_pending: 20_000,
                only: None,
                extra: Vec::new(),
                io_messages: 200,
            }
        };
        let knob = |env: &str, arg: &str| -> Option<String> {
            let from_arg = args
                .iter()
                .position(|a| a == arg)
                .and_then(|i| args.get(i + 1).cloned());
            from_arg.or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        };
        fn number<T: std::str::FromStr>(name: &str, text: String) -> T {
            text.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {text:?}"))
        }
        if let Some(v) = knob("JETFN_BENCH_MESSAGES", "--messages") {
            settings.messages = number("JETFN_BENCH_MESSAGES", v);
        }
        if let Some(v) = knob("JETFN_BENCH_RUNS", "--runs") {
            settings.runs = number("JETFN_BENCH_RUNS", v);
        }
        if let Some(v) = knob("JETFN_BENCH_LATENCY_MESSAGES", "--latency-messages") {
            settings.latency_messages = number("JETFN_BENCH_LATENCY_MESSAGES", v);
        }
        if let Some(v) = knob("JETFN_BENCH_RATE", "--rate") {
            settings.rate = number("JETFN_BENCH_RATE", v);
        }
        if let Some(v) = knob("JETFN_BENCH_MAX_WORKERS", "--max-workers") {
            settings.max_workers = (v != "default").then(|| number("JETFN_BENCH_MAX_WORKERS", v));
        }
        if let Some(v) = knob("JETFN_BENCH_IO_MESSAGES", "--io-messages") {
            settings.io_messages = number("JETFN_BENCH_IO_MESSAGES", v);
        }
        if let Some(v) = knob("JETFN_BENCH_MAX_ACK_PENDING", "--max-ack-pending") {
            settings.max_ack_pending = number("JETFN_BENCH_MAX_ACK_PENDING", v);
        }
        if let Some(v) = knob("JETFN_BENCH_CONFIG", "--config") {
            settings.extra = v
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((key, value)) => (key.trim().to_owned(), value.trim().to_owned()),
                    None => panic!("JETFN_BENCH_CONFIG: expected KEY=VALUE, got {pair:?}"),
                })
                .collect();
        }
        if let Some(v) = knob("JETFN_BENCH_ONLY", "--only") {
            settings.only = match v.as_str() {
                "raw" => Some(Contender::Raw),
                "peer" => Some(Contender::Peer),
                "jetfn" => Some(Contender::Jetfn),
                _ => panic!("JETFN_BENCH_ONLY: expected `raw`, `peer` or `jetfn`, got {v:?}"),
            };
        }
        assert!(
            settings.messages > 0,
            "JETFN_BENCH_MESSAGES must be above 0"
        );
        assert!(settings.runs > 0, "JETFN_BENCH_RUNS must be above 0");
        assert!(settings.rate > 0, "JETFN_BENCH_RATE must be above 0");
        settings
    }

    /// Whether the throughput rows of `side` run (all, unless `--only` names another).
    pub(crate) fn runs_side(&self, side: Contender) -> bool {
        self.only.is_none_or(|only| only == side)
    }

    /// How long one phase may take before the benchmark gives up.
    pub(crate) fn patience(&self, messages: u64) -> Duration {
        Duration::from_secs(60 + messages / 1_000)
    }
}

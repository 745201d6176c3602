//! The issuer's own load, measured in its request handler: per endpoint, how many requests, how
//! many answered 5xx, how long the issuer took over each (from the request's arrival in the
//! handler to its answer, without a delay a test asked for), and how many were in flight at
//! once. A run that fails while the issuer's figures climb was limited by the harness, not by
//! the gateway under test.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Samples kept per endpoint; past this, the oldest are overwritten (the figures then describe
/// the latest requests).
const SAMPLES_KEPT: usize = 1 << 20;

/// What one endpoint (or the whole issuer) handled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EndpointLoad {
    pub requests: u64,
    pub errors_5xx: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The most requests this endpoint had in its handler at once.
    pub max_in_flight: u64,
}

/// The issuer's load since it started: [`IssuerLoad::overall`] and per endpoint (`discovery`,
/// `jwks`, `authorize`, `token`, `userinfo`, `end_session`, `revoke`, `login`, `consent`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IssuerLoad {
    pub overall: EndpointLoad,
    pub endpoints: BTreeMap<&'static str, EndpointLoad>,
}

impl IssuerLoad {
    pub fn endpoint(&self, name: &str) -> EndpointLoad {
        self.endpoints.get(name).copied().unwrap_or_default()
    }
}

impl fmt::Display for IssuerLoad {
    /// One line: the overall figures, then the token endpoint's (where logins spend the most).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.overall;
        let t = self.endpoint("token");
        write!(
            f,
            "mock issuer: {} requests, {} answered 5xx, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, up to {} at once; \
             token: {} requests, p99 {:.2} ms",
            o.requests, o.errors_5xx, o.p50_ms, o.p99_ms, o.max_ms, o.max_in_flight, t.requests, t.p99_ms
        )
    }
}

#[derive(Default)]
struct Counter {
    requests: AtomicU64,
    errors_5xx: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Handler times in microseconds, a ring of at most [`SAMPLES_KEPT`].
    samples: Mutex<(Vec<u32>, usize)>,
}

impl Counter {
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    fn leave(&self, status: u16) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors_5xx.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sample(&self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let mut samples = self.samples.lock().expect("load samples");
        let (ring, next) = &mut *samples;
        if ring.len() < SAMPLES_KEPT {
            ring.push(micros);
        } else {
            ring[*next] = micros;
            *next = (*next + 1) % SAMPLES_KEPT;
        }
    }

    fn samples(&self) -> Vec<u32> {
        self.samples.lock().expect("load samples").0.clone()
    }

    fn figures(&self, mut samples: Vec<u32>) -> EndpointLoad {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            f64::from(samples[i]) / 1000.0
        };
        EndpointLoad {
            requests: self.requests.load(Ordering::Relaxed),
            errors_5xx: self.errors_5xx.load(Ordering::Relaxed),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: samples.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }
}

/// The counters of every endpoint and of the issuer as a whole.
#[derive(Default)]
pub(super) struct LoadMeter {
    overall: Counter,
    endpoints: BTreeMap<&'static str, Counter>,
}

/// A request in a handler; [`InFlight::done`] records it.
pub(super) struct InFlight<'a> {
    meter: &'a LoadMeter,
    endpoint: &'static str,
    started: std::time::Instant,
}

impl InFlight<'_> {
    pub fn done(self, status: u16) {
        let took = self.started.elapsed();
        // The overall figures are computed from the endpoints' samples: no copy kept here.
        self.meter.overall.leave(status);
        if let Some(counter) = self.meter.endpoints.get(self.endpoint) {
            counter.leave(status);
            counter.sample(took);
        }
    }
}

impl LoadMeter {
    pub fn new(endpoints: &[&'static str]) -> Self {
        LoadMeter {
            overall: Counter::default(),
            endpoints: endpoints.iter().map(|e| (*e, Counter::default())).collect(),
        }
    }

    pub fn enter(&self, endpoint: &'static str) -> InFlight<'_> {
        self.overall.enter();
        if let Some(counter) = self.endpoints.get(endpoint) {
            counter.enter();
        }
        InFlight { meter: self, endpoint, started: std::time::Instant::now() }
    }

    pub fn snapshot(&self) -> IssuerLoad {
        let mut all = Vec::new();
        let mut endpoints = BTreeMap::new();
        for (name, counter) in &self.endpoints {
            let samples = counter.samples();
            all.extend_from_slice(&samples);
            endpoints.insert(*name, counter.figures(samples));
        }
        IssuerLoad { overall: self.overall.figures(all), endpoints }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_in_flight_follow_the_requests() {
        let meter = LoadMeter::new(&["token", "jwks"]);
        assert_eq!(meter.snapshot().overall, EndpointLoad::default());
        let a = meter.enter("token");
        let b = meter.enter("token");
        b.done(200);
        a.done(503);
        meter.enter("jwks").done(200);
        let load = meter.snapshot();
        assert_eq!(load.endpoint("token").requests, 2);
        assert_eq!(load.endpoint("token").errors_5xx, 1);
        assert_eq!(load.endpoint("token").max_in_flight, 2);
        assert_eq!(load.endpoint("jwks").max_in_flight, 1);
        assert_eq!(load.overall.requests, 3);
        assert!(load.overall.p99_ms >= load.overall.p50_ms);
        assert!(load.to_string().contains("3 requests, 1 answered 5xx"), "{load}");
    }
}

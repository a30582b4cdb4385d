//! The closed loop: `clients` clients, each with its own connection,
//! each sending its next request as soon as the last one is answered,
//! until `requests` have been sent in all. Keys are drawn from a seeded
//! generator (client `i` of a row with seed `s` always draws the same
//! keys), so two systems get the same requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft::Rng;
use tokio::sync::Barrier;

use crate::client::{Client, System};

/// What the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Put,
    Get,
    /// Half puts, half gets.
    Mixed,
}

impl Workload {
    pub fn parse(text: &str) -> Result<Workload, String> {
        match text {
            "put" | "puts" => Ok(Workload::Put),
            "get" | "gets" => Ok(Workload::Get),
            "mixed" => Ok(Workload::Mixed),
            _ => Err(format!("unknown workload {text:?}: say put, get or mixed")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
        }
    }
}

/// One row of the benchmark: a workload with a number of clients.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub workload: Workload,
    pub clients: usize,
    pub requests: u64,
    pub value_size: usize,
    pub keys: u64,
    pub seed: u64,
}

/// What a row measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub requests: u64,
    pub elapsed: Duration,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0.5: the median).
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

/// Runs `row` against the servers at `addrs`, printing progress to
/// stderr about once a second. Each client first connects and sends one
/// unmeasured get (which finds the leader); the clock starts when every
/// client has.
pub async fn run(system: System, addrs: &[String], row: Row) -> Result<Outcome, String> {
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(row.clients + 1));
    let mut tasks = Vec::new();
    for i in 0..row.clients {
        let mut client = Client::connect(system, addrs).await?;
        let (issued, done, ready) = (issued.clone(), done.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let warm_up = client.get(b"warm-up".to_vec()).await;
            ready.wait().await;
            warm_up?;
            let mut rng = Rng::new(row.seed, i as u64 + 1);
            let mut latencies = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < row.requests {
                let key = format!("key{:08}", rng.next_u64() % row.keys).into_bytes();
                let put = match row.workload {
                    Workload::Put => true,
                    Workload::Get => false,
                    Workload::Mixed => rng.next_u64().is_multiple_of(2),
                };
                let start = Instant::now();
                if put {
                    client.put(key, value(&mut rng, row.value_size)).await?;
                } else {
                    client.get(key).await?;
                }
                latencies.push(start.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(latencies)
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    let progress = tokio::spawn(progress(system, row, done.clone(), start));
    let mut latencies = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("a client panicked: {e}"))),
        }
    }
    let elapsed = start.elapsed();
    progress.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort();
    Ok(Outcome { requests: latencies.len() as u64, elapsed, latencies })
}

/// A value of `size` random lowercase letters.
fn value(rng: &mut Rng, size: usize) -> Vec<u8> {
    (0..size).map(|_| b'a' + (rng.next_u64() % 26) as u8).collect()
}

async fn progress(system: System, row: Row, done: Arc<AtomicU64>, start: Instant) {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "  {} {} x{}: {now}/{} after {:.0} s ({}/s in the last second)",
            system.name(),
            row.workload.name(),
            row.clients,
            row.requests,
            start.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ms: &[u64]) -> Outcome {
        let mut latencies: Vec<Duration> = ms.iter().map(|&m| Duration::from_millis(m)).collect();
        latencies.sort();
        Outcome { requests: ms.len() as u64, elapsed: Duration::from_secs(2), latencies }
    }

    #[test]
    fn quantiles_are_taken_from_the_sorted_latencies() {
        let o = outcome(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(o.quantile(0.5), Duration::from_millis(50));
        assert_eq!(o.quantile(0.99), Duration::from_millis(99));
        assert_eq!(o.max(), Duration::from_millis(100));
        assert_eq!(o.per_second(), 50.0);
        assert_eq!(outcome(&[7]).quantile(0.5), Duration::from_millis(7));
        assert_eq!(outcome(&[3, 1, 2]).quantile(0.5), Duration::from_millis(2));
        assert_eq!(outcome(&[]).quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn workloads_parse_by_name() {
        assert_eq!(Workload::parse("puts"), Ok(Workload::Put));
        assert_eq!(Workload::parse("mixed"), Ok(Workload::Mixed));
        assert!(Workload::parse("scan").unwrap_err().contains("put, get or mixed"));
    }
}

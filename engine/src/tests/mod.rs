//! Unit tests of the engine, one file per concern, and the properties that
//! hold over random sequences of evaluations.

mod critical;
mod data;
mod growth;
mod guards;
mod outcomes;
mod properties;
mod raise;
mod scaling;
mod sim;

use std::time::Duration;

use jiff::Timestamp;

use super::{Decision, Memory, Outcome, Policy, Sample, Workload, decide};

/// Every test pod's limit: 1 GiB, the size of a typical shortener pod.
const LIMIT_BYTES: u64 = 1 << 30;

/// An arbitrary, fixed start so tests never read the clock.
fn start() -> Timestamp {
    Timestamp::from_second(1_750_000_000).expect("a valid timestamp")
}

/// The instant `seconds` after the start of a test.
pub fn at(seconds: u64) -> Timestamp {
    start() + Duration::from_secs(seconds)
}

/// A sample of `pod` at `percent` of its limit, taken at `taken`.
pub fn sample(pod: &str, percent: f64, taken: Timestamp) -> Sample {
    let ratio = percent / 100.0;
    Sample {
        pod: pod.to_owned(),
        usage_ratio: ratio,
        bytes: (ratio * LIMIT_BYTES as f64) as u64,
        limit_bytes: LIMIT_BYTES,
        at: taken,
        requests: None,
    }
}

/// A sequence of evaluations that feeds each decision's memory into the next.
pub struct Run {
    pub policy: Policy,
    pub workload: Workload,
    pub memory: Memory,
}

impl Run {
    pub fn new(policy: Policy, workload: Workload) -> Self {
        Self {
            policy,
            workload,
            memory: Memory::default(),
        }
    }

    /// Evaluates at `seconds` with each listed pod sampled just then.
    pub fn at(&mut self, seconds: u64, usage: &[(&str, f64)]) -> Decision {
        let now = at(seconds);
        let samples: Vec<Sample> = usage
            .iter()
            .map(|(pod, percent)| sample(pod, *percent, now))
            .collect();
        self.eval(&samples, now)
    }

    /// Evaluates at `seconds` with every pod of the workload at `percent`.
    pub fn all_at(&mut self, seconds: u64, percent: f64) -> Decision {
        let pods = self.workload.pods.clone();
        let usage: Vec<(&str, f64)> = pods.iter().map(|pod| (pod.as_str(), percent)).collect();
        self.at(seconds, &usage)
    }

    /// Evaluates these samples at `now`; the action, if any, is carried out.
    pub fn eval(&mut self, samples: &[Sample], now: Timestamp) -> Decision {
        self.eval_ending(samples, now, &Outcome::Applied)
    }

    /// Evaluates these samples at `now`; the action, if any, ends with `outcome`.
    pub fn eval_ending(
        &mut self,
        samples: &[Sample],
        now: Timestamp,
        outcome: &Outcome,
    ) -> Decision {
        let mut decision = decide(&self.policy, samples, &self.workload, &self.memory, now);
        decision.settle(outcome);
        self.memory = decision.memory.clone();
        decision
    }
}

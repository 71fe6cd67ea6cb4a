//! Policies and the queue configuration, with the documented defaults.

use std::str::FromStr;

use crate::error::{CoreError, CoreResult};

/// How a new call is ranked before it is discretised into a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// First come first served in one queue, never preempting: what vLLM does.
    Fcfs,
    /// Call-level MLFQ (FastServe style): every call enters the top queue and is demoted as it
    /// runs; knows nothing of programs. The baseline Autellix beats.
    Mlfq,
    /// Program-Level Attained Service: priority = engine time of the program's finished calls.
    Plas,
    /// Adaptive Thread-Level Attained Service: priority = the program's critical path so far
    /// (or, when the call names its parents, the longest parent path).
    Atlas,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fcfs => "fcfs",
            Policy::Mlfq => "mlfq",
            Policy::Plas => "plas",
            Policy::Atlas => "atlas",
        }
    }

    /// Whether the program's own waiting and service count in the anti-starvation ratio.
    pub fn is_program_aware(self) -> bool {
        matches!(self, Policy::Plas | Policy::Atlas)
    }
}

impl FromStr for Policy {
    type Err = CoreError;

    fn from_str(name: &str) -> CoreResult<Self> {
        match name {
            "fcfs" => Ok(Policy::Fcfs),
            "mlfq" => Ok(Policy::Mlfq),
            "plas" => Ok(Policy::Plas),
            "atlas" => Ok(Policy::Atlas),
            other => Err(CoreError::InvalidConfig(format!(
                "unknown policy {other:?}; choose one of \"fcfs\", \"mlfq\", \"plas\", \"atlas\""
            ))),
        }
    }
}

/// Queue i holds priorities in [boundaries[i-1], boundaries[i]); eight queues whose ranges double
/// (1 s, 2 s, ... 64 s of attained service), FastServe style: a short program moves through the
/// top queues quickly while long programs spread over the lower ones.
pub const DEFAULT_QUEUE_BOUNDARIES: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// A queue's quantum defaults to the width of its range, so a call that keeps running moves down
/// the queues at the same pace as its program's attained service would. The last queue has no
/// lower queue to demote to; its quantum is kept equal to the one before it for symmetry.
pub fn default_quanta(boundaries: &[f64]) -> Vec<f64> {
    let mut quanta = Vec::with_capacity(boundaries.len() + 1);
    let mut lower = 0.0;
    for &upper in boundaries {
        quanta.push(upper - lower);
        lower = upper;
    }
    quanta.push(quanta.last().copied().unwrap_or(f64::INFINITY));
    quanta
}

/// beta of the anti-starvation rule: a waiting call is promoted to the top queue once its program
/// and itself have waited `beta` times as long as they have been served, in units of the fair
/// wait (waiting calls per running call, at least 1). 4 keeps mean latency
/// close to pure PLAS while bounding how long a heavy program can starve.
pub const DEFAULT_STARVATION_RATIO: f64 = 4.0;

/// Idle programs (no live call) are dropped after this long without activity: agents' tool calls
/// and humans can pause a program for minutes, so the default is generous.
pub const DEFAULT_STALE_AFTER: f64 = 900.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub policy: Policy,
    /// K-1 strictly increasing, positive attained-service thresholds in seconds.
    pub queue_boundaries: Vec<f64>,
    /// K positive quanta in seconds, one per queue.
    pub quanta: Vec<f64>,
    /// beta; infinity disables anti-starvation.
    pub starvation_ratio: f64,
    pub stale_after: f64,
}

impl SchedulerConfig {
    /// Builds a configuration, filling defaults for what is `None` and validating the rest.
    /// FCFS always uses one queue, so boundaries and quanta do not apply to it.
    pub fn new(
        policy: Policy,
        queue_boundaries: Option<Vec<f64>>,
        quanta: Option<Vec<f64>>,
        starvation_ratio: Option<f64>,
        stale_after: Option<f64>,
    ) -> CoreResult<Self> {
        let invalid = |why: String| Err(CoreError::InvalidConfig(why));
        if policy == Policy::Fcfs && (queue_boundaries.is_some() || quanta.is_some()) {
            return invalid("fcfs uses a single queue; do not pass queue_boundaries or quanta".into());
        }
        let boundaries = match (policy, queue_boundaries) {
            (Policy::Fcfs, _) => Vec::new(),
            (_, Some(given)) => given,
            (_, None) => DEFAULT_QUEUE_BOUNDARIES.to_vec(),
        };
        if boundaries.iter().any(|b| !b.is_finite() || *b <= 0.0) {
            return invalid(format!("queue_boundaries must be finite and positive, got {boundaries:?}"));
        }
        if boundaries.windows(2).any(|pair| pair[0] >= pair[1]) {
            return invalid(format!("queue_boundaries must be strictly increasing, got {boundaries:?}"));
        }
        let quanta = match (policy, quanta) {
            (Policy::Fcfs, _) => vec![f64::INFINITY],
            (_, Some(given)) => given,
            (_, None) => default_quanta(&boundaries),
        };
        if quanta.len() != boundaries.len() + 1 {
            return invalid(format!(
                "quanta needs one value per queue: {} queue boundaries make {} queues, got {} quanta",
                boundaries.len(),
                boundaries.len() + 1,
                quanta.len()
            ));
        }
        if quanta.iter().any(|q| q.is_nan() || *q <= 0.0) {
            return invalid(format!("quanta must be positive, got {quanta:?}"));
        }
        let starvation_ratio = starvation_ratio.unwrap_or(DEFAULT_STARVATION_RATIO);
        if starvation_ratio.is_nan() || starvation_ratio <= 0.0 {
            return invalid(format!(
                "starvation_ratio must be positive (use infinity to disable anti-starvation), got {starvation_ratio}"
            ));
        }
        let stale_after = stale_after.unwrap_or(DEFAULT_STALE_AFTER);
        if stale_after.is_nan() || stale_after <= 0.0 {
            return invalid(format!(
                "stale_after must be positive seconds (infinity keeps idle programs), got {stale_after}"
            ));
        }
        Ok(SchedulerConfig { policy, queue_boundaries: boundaries, quanta, starvation_ratio, stale_after })
    }

    pub fn num_queues(&self) -> usize {
        self.quanta.len()
    }

    /// The queue whose range holds `priority`.
    pub fn queue_for(&self, priority: f64) -> usize {
        self.queue_boundaries.partition_point(|&bound| bound <= priority)
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::new(Policy::Plas, None, None, None, None).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_double_and_quanta_match_range_widths() {
        let config = SchedulerConfig::default();
        assert_eq!(config.num_queues(), 8);
        assert_eq!(config.quanta, vec![1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0]);
    }

    #[test]
    fn queue_for_uses_half_open_ranges() {
        let config = SchedulerConfig::default();
        assert_eq!(config.queue_for(0.0), 0);
        assert_eq!(config.queue_for(0.999), 0);
        assert_eq!(config.queue_for(1.0), 1);
        assert_eq!(config.queue_for(63.9), 6);
        assert_eq!(config.queue_for(64.0), 7);
        assert_eq!(config.queue_for(1e9), 7);
    }

    #[test]
    fn bad_configurations_are_rejected_with_reasons() {
        let err = |b, q, r| SchedulerConfig::new(Policy::Plas, b, q, r, None).unwrap_err().to_string();
        assert!(err(Some(vec![2.0, 1.0]), None, None).contains("strictly increasing"));
        assert!(err(Some(vec![-1.0]), None, None).contains("positive"));
        assert!(err(Some(vec![1.0]), Some(vec![1.0]), None).contains("one value per queue"));
        assert!(err(None, None, Some(0.0)).contains("starvation_ratio"));
        assert!("lifo".parse::<Policy>().unwrap_err().to_string().contains("unknown policy"));
        assert!(SchedulerConfig::new(Policy::Fcfs, Some(vec![1.0]), None, None, None).is_err());
    }

    #[test]
    fn fcfs_has_one_queue() {
        let config = SchedulerConfig::new(Policy::Fcfs, None, None, None, None).unwrap();
        assert_eq!(config.num_queues(), 1);
        assert_eq!(config.queue_for(1e9), 0);
    }
}

//! Profiling driver: the call-by-call engine step of `bench/scheduler_latency.py` in pure Rust
//! (record_service of the batch, finish and add 16 calls one by one, schedule), so `perf` sees
//! only the core. Usage: call_by_call [plas|atlas] [programs] [steps]

use std::time::Instant;

use autellix_sched::{Policy, Scheduler, SchedulerConfig};

const STEP_SECONDS: f64 = 0.02;
const QUEUED: u64 = 10_000;
const BATCH: usize = 256;
const CHURN: usize = 16;

/// xorshift64*: reproducible program ids without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let policy: Policy = args.get(1).map_or("plas", String::as_str).parse().expect("policy");
    let programs: u64 = args.get(2).map_or(100, |a| a.parse().expect("programs"));
    let steps: usize = args.get(3).map_or(3000, |a| a.parse().expect("steps"));
    let config = SchedulerConfig::new(policy, None, None, Some(4.0), None).expect("config");
    let mut s = Scheduler::new(config);
    let mut rng = Rng(7000);
    let mut now = 0.0;
    let initial = QUEUED + BATCH as u64;
    for call in 0..initial {
        s.add_call(call, rng.below(programs), now, &[]).expect("add");
    }
    let mut next_id = initial;
    let mut running: Vec<u64> = s.schedule(now, BATCH).expect("schedule").admit.clone();
    let mut samples = Vec::with_capacity(steps);
    let mut phases: [Vec<u64>; 4] = Default::default();
    for _ in 0..steps {
        now += STEP_SECONDS;
        let finished: Vec<u64> = running[..CHURN.min(running.len())].to_vec();
        let arrivals: Vec<(u64, u64)> = (0..CHURN as u64).map(|i| (next_id + i, rng.below(programs))).collect();
        next_id += CHURN as u64;
        let start = Instant::now();
        s.record_service(&running, STEP_SECONDS, now).expect("service");
        let serviced = Instant::now();
        for &call in &finished {
            s.finish_calls(&[call], now).expect("finish");
        }
        let finishes = Instant::now();
        for &(call, program) in &arrivals {
            s.add_call(call, program, now, &[]).expect("add");
        }
        let arrived = Instant::now();
        let decision = s.schedule(now, BATCH).expect("schedule");
        let end = Instant::now();
        samples.push((end - start).as_nanos() as u64);
        phases[0].push((serviced - start).as_nanos() as u64);
        phases[1].push((finishes - serviced).as_nanos() as u64);
        phases[2].push((arrived - finishes).as_nanos() as u64);
        phases[3].push((end - arrived).as_nanos() as u64);
        running.retain(|c| !finished.contains(c) && !decision.preempt.contains(c));
        running.extend_from_slice(&decision.admit);
    }
    samples.sort_unstable();
    let phase_medians: Vec<String> = phases
        .iter_mut()
        .zip(["service", "finish", "add", "schedule"])
        .map(|(samples, name)| {
            samples.sort_unstable();
            format!("{name} {:.2}", samples[samples.len() / 2] as f64 / 1e3)
        })
        .collect();
    let stats = s.stats();
    println!(
        "{} programs={programs}: median {:.2} us, p99 {:.2} us ({}); promotions {} demotions {} preemptions {}",
        policy.name(),
        samples[samples.len() / 2] as f64 / 1e3,
        samples[samples.len() * 99 / 100] as f64 / 1e3,
        phase_medians.join(", "),
        stats.promotions,
        stats.demotions,
        stats.preemptions
    );
}

//! Routing calls across engine replicas so that a program's long prefixes stay in one KV cache.

use std::str::FromStr;

use rustc_hash::FxHashMap;

use crate::error::{CoreError, CoreResult};
use crate::ProgramId;

/// Calls up to this many prompt tokens go to the least-used engine: short prefixes (mostly shared
/// system prompts) hit the prefix cache almost anywhere, so only long ones are worth pinning.
pub const DEFAULT_SHORT_CALL_TOKENS: u32 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancerPolicy {
    /// Short calls to the least-used engine, long calls to the engine their program is pinned to.
    Autellix,
    LeastUsed,
    RoundRobin,
}

impl FromStr for BalancerPolicy {
    type Err = CoreError;

    fn from_str(name: &str) -> CoreResult<Self> {
        match name {
            "autellix" => Ok(BalancerPolicy::Autellix),
            "least-used" => Ok(BalancerPolicy::LeastUsed),
            "round-robin" => Ok(BalancerPolicy::RoundRobin),
            other => Err(CoreError::InvalidConfig(format!(
                "unknown balancer policy {other:?}; choose one of \"autellix\", \"least-used\", \"round-robin\""
            ))),
        }
    }
}

#[derive(Debug)]
pub struct LoadBalancer {
    policy: BalancerPolicy,
    short_call_tokens: u32,
    /// Calls routed to each engine and not yet released.
    loads: Vec<u32>,
    pins: FxHashMap<ProgramId, usize>,
    next_round_robin: usize,
}

impl LoadBalancer {
    pub fn new(num_engines: usize, short_call_tokens: u32, policy: BalancerPolicy) -> CoreResult<Self> {
        if num_engines == 0 {
            return Err(CoreError::InvalidConfig("num_engines must be at least 1".into()));
        }
        Ok(LoadBalancer {
            policy,
            short_call_tokens,
            loads: vec![0; num_engines],
            pins: FxHashMap::default(),
            next_round_robin: 0,
        })
    }

    /// Picks the engine for a call and counts it as outstanding there until `release`.
    pub fn route(&mut self, program: ProgramId, prompt_tokens: u32) -> usize {
        let engine = match self.policy {
            BalancerPolicy::LeastUsed => self.least_used(),
            BalancerPolicy::RoundRobin => {
                let engine = self.next_round_robin;
                self.next_round_robin = (engine + 1) % self.loads.len();
                engine
            }
            BalancerPolicy::Autellix if prompt_tokens <= self.short_call_tokens => self.least_used(),
            BalancerPolicy::Autellix => {
                let least_used = self.least_used();
                *self.pins.entry(program).or_insert(least_used)
            }
        };
        self.loads[engine] += 1;
        engine
    }

    /// A call routed to `engine` finished or was aborted.
    pub fn release(&mut self, engine: usize) -> CoreResult<()> {
        let engines = self.loads.len();
        let load = self.loads.get_mut(engine).ok_or_else(|| {
            CoreError::InvalidArgument(format!("engine {engine} does not exist; engines are 0..{engines}"))
        })?;
        if *load == 0 {
            return Err(CoreError::InvalidArgument(format!(
                "engine {engine} has no outstanding call to release: release once per routed call"
            )));
        }
        *load -= 1;
        Ok(())
    }

    /// Unpins an ended program.
    pub fn forget(&mut self, program: ProgramId) {
        self.pins.remove(&program);
    }

    pub fn pinned(&self, program: ProgramId) -> Option<usize> {
        self.pins.get(&program).copied()
    }

    pub fn loads(&self) -> &[u32] {
        &self.loads
    }

    pub fn policy(&self) -> BalancerPolicy {
        self.policy
    }

    pub fn short_call_tokens(&self) -> u32 {
        self.short_call_tokens
    }

    /// Fewest outstanding calls; ties go to the lowest index.
    fn least_used(&self) -> usize {
        let mut best = 0;
        for (engine, &load) in self.loads.iter().enumerate() {
            if load < self.loads[best] {
                best = engine;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(engines: usize, policy: BalancerPolicy) -> LoadBalancer {
        LoadBalancer::new(engines, DEFAULT_SHORT_CALL_TOKENS, policy).unwrap()
    }

    #[test]
    fn short_calls_spread_long_calls_stick_to_their_program() {
        let mut b = balancer(3, BalancerPolicy::Autellix);
        assert_eq!(b.route(1, 100), 0);
        assert_eq!(b.route(1, 100), 1);
        let pinned = b.route(7, 5000);
        assert_eq!(pinned, 2, "first placement goes to the least used engine");
        for _ in 0..4 {
            assert_eq!(b.route(7, 4000), pinned, "long calls of a program stay on its engine");
        }
        assert_eq!(b.pinned(7), Some(2));
        assert_eq!(b.route(7, 10), 0, "short calls of a pinned program still go to the least used engine");
        b.forget(7);
        assert_eq!(b.pinned(7), None);
    }

    #[test]
    fn release_frees_load_and_rejects_mistakes() {
        let mut b = balancer(2, BalancerPolicy::LeastUsed);
        assert_eq!(b.route(1, 1), 0);
        assert_eq!(b.route(2, 1), 1);
        b.release(0).unwrap();
        assert_eq!(b.route(3, 1), 0);
        assert_eq!(b.loads(), &[1, 1]);
        assert!(b.release(5).unwrap_err().to_string().contains("does not exist"));
        b.release(1).unwrap();
        assert!(b.release(1).unwrap_err().to_string().contains("no outstanding call"));
    }

    #[test]
    fn round_robin_cycles() {
        let mut b = balancer(3, BalancerPolicy::RoundRobin);
        let engines: Vec<_> = (0..6).map(|p| b.route(p, 10_000)).collect();
        assert_eq!(engines, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn zero_engines_is_a_config_error() {
        assert!(LoadBalancer::new(0, 1, BalancerPolicy::Autellix).is_err());
    }
}

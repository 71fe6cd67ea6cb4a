//! Preemption that pays for itself: which running calls the scheduler must not preempt this step.
//!
//! vLLM preempts by recompute: a preempted call's KV blocks are freed and its context is prefilled
//! again when it resumes, less what the prefix cache still holds (its full blocks, unless the cache
//! is short of room and evicts them). That work delays every call in the batch. Preempting is worth
//! it only when it costs less than waiting for a slot to free up on its own, so a running call whose
//! recompute takes more engine work than the expected wait for the next free slot is protected.
//!
//! The expected wait is measured, not configured: the engine work between call completions while
//! the batch is full (a running mean), so it fits whatever engine and load the plug-in runs on.
//! Before the first measurement nothing is protected.

/// Weight of the newest interval in the running mean: about the last 16 completions count.
pub const SMOOTHING: f64 = 1.0 / 16.0;

/// Tokens a call preempted now would prefill again: the partial last block if the prefix cache
/// keeps its full blocks, else all of them.
pub fn recompute_tokens(computed_tokens: u64, block_size: u64, cached: bool) -> u64 {
    if cached {
        computed_tokens % block_size.max(1)
    } else {
        computed_tokens
    }
}

#[derive(Debug, Clone)]
pub struct PreemptionGuard {
    enabled: bool,
    /// Prompt tokens whose prefill is one unit of engine work (`autellix.work_units`).
    prefill_tokens_per_unit: f64,
    /// Mean engine work between completions while the batch was full.
    slot_wait: Option<f64>,
    last_completion: Option<f64>,
}

impl PreemptionGuard {
    pub fn new(enabled: bool, prefill_tokens_per_unit: f64) -> Self {
        PreemptionGuard { enabled, prefill_tokens_per_unit, slot_wait: None, last_completion: None }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn slot_wait(&self) -> Option<f64> {
        self.slot_wait
    }

    /// Whether it can protect anything at all: enabled, and a wait for a slot measured.
    pub fn is_active(&self) -> bool {
        self.limit().is_some()
    }

    /// The recompute, in tokens, above which a call is protected; None while nothing is.
    fn limit(&self) -> Option<f64> {
        self.slot_wait.filter(|_| self.enabled).map(|wait| wait * self.prefill_tokens_per_unit)
    }

    /// Whether any call could be protected now: not when every recompute is a partial block
    /// (cached) that costs less than the wait, so the caller can skip its pass over the batch.
    pub fn may_protect(&self, block_size: u64, cached: bool) -> bool {
        self.limit().is_some_and(|limit| !cached || block_size.saturating_sub(1) as f64 > limit)
    }

    /// `count` calls finished at `work_clock`; intervals count only while the batch was full
    /// (an idle slot frees nothing).
    pub fn observe_completions(&mut self, count: usize, work_clock: f64, batch_full: bool) {
        if count == 0 {
            return;
        }
        if let (true, Some(last)) = (batch_full, self.last_completion) {
            let interval = (work_clock - last).max(0.0) / count as f64;
            self.slot_wait = Some(match self.slot_wait {
                None => interval,
                Some(wait) => wait + SMOOTHING * (interval - wait),
            });
        }
        self.last_completion = Some(work_clock);
    }

    /// Whether a running call with `computed_tokens` would cost more to recompute than waiting
    /// for the next free slot.
    pub fn protects(&self, computed_tokens: u64, block_size: u64, cached: bool) -> bool {
        self.limit().is_some_and(|limit| recompute_tokens(computed_tokens, block_size, cached) as f64 > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: f64 = 128.0;

    #[test]
    fn recompute_is_the_partial_block_when_cached_else_everything() {
        assert_eq!(recompute_tokens(100, 32, true), 4);
        assert_eq!(recompute_tokens(96, 32, true), 0);
        assert_eq!(recompute_tokens(100, 32, false), 100);
    }

    #[test]
    fn a_preemption_that_does_not_pay_is_skipped_and_one_that_pays_is_not() {
        let mut guard = PreemptionGuard::new(true, P);
        assert!(!guard.is_active() && !guard.protects(10_000, 32, false)); // nothing measured yet
        guard.observe_completions(1, 10.0, true);
        assert_eq!(guard.slot_wait(), None); // the first completion: no interval yet
        guard.observe_completions(1, 14.0, true); // a slot frees every 4 units
        assert_eq!(guard.slot_wait(), Some(4.0));
        assert!(guard.is_active());
        let (cheap, dear) = (4 * 128 - 1, 4 * 128 + 1);
        assert!(!guard.protects(cheap, 1 << 20, false) && guard.protects(dear, 1 << 20, false));
        assert!(!guard.protects(dear, 32, true)); // cached: only the partial block recomputes
    }

    #[test]
    fn the_wait_is_a_running_mean_of_full_batch_intervals_and_disabled_protects_nothing() {
        let mut guard = PreemptionGuard::new(true, P);
        guard.observe_completions(1, 0.0, true);
        guard.observe_completions(2, 8.0, true); // two slots in 8 units
        guard.observe_completions(1, 100.0, false); // idle slots: not a wait for a slot
        assert_eq!(guard.slot_wait(), Some(4.0));
        let mut off = PreemptionGuard::new(false, P);
        off.observe_completions(1, 0.0, true);
        off.observe_completions(1, 1.0, true);
        assert!(!off.is_active() && !off.may_protect(32, false) && !off.protects(10_000, 32, false));
    }
}

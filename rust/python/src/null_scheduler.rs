//! `autellix_core._NullScheduler`: the per-call API of `Scheduler` that decides nothing. It takes
//! each argument the way `Scheduler` does (the same extraction, the same `Decision` back) and
//! admits arrivals first come first served up to the free capacity, so a driver's batch stays full.
//! Driven like the core, it times what any scheduler behind this module pays to be called from
//! Python: the floor `bench/scheduler_latency.py` reads the core's per-call cost against.

use std::collections::VecDeque;

use pyo3::prelude::*;

use crate::ids::Ids;
use crate::Decision;

#[pyclass(module = "autellix_core", name = "_NullScheduler")]
#[derive(Default)]
pub(crate) struct NullScheduler {
    arrived: VecDeque<u64>,
    running: usize,
}

#[pymethods]
impl NullScheduler {
    #[new]
    fn new() -> Self {
        NullScheduler::default()
    }

    #[pyo3(signature = (call_id, program_id, now, parents=Vec::new()))]
    fn add_call(&mut self, call_id: u64, program_id: u64, now: f64, parents: Vec<u64>) {
        let _ = (program_id, now, parents);
        self.arrived.push_back(call_id);
    }

    fn record_service(&mut self, call_ids: Ids, seconds: f64, now: f64) {
        let _ = (call_ids, seconds, now);
    }

    /// The bench finishes running calls only.
    fn finish_call(&mut self, call_id: u64, now: f64) {
        let _ = (call_id, now);
        self.running = self.running.saturating_sub(1);
    }

    #[pyo3(signature = (now, capacity, protected=Ids::default()))]
    fn schedule(&mut self, now: f64, capacity: usize, protected: Ids) -> Decision {
        let _ = (now, protected);
        let room = capacity.saturating_sub(self.running).min(self.arrived.len());
        self.running += room;
        Decision { admit: self.arrived.drain(..room).collect(), preempt: Vec::new(), promoted: Vec::new() }
    }
}

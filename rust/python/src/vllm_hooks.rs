//! `autellix_core.VllmHooks`: what the vLLM plug-in does in each engine step, in one crossing per
//! hook. The plug-in (`autellix.vllm.scheduler`) overrides vLLM's `Scheduler.add_request` and
//! `schedule` with this class's own (`install`): `add_request` calls vLLM's, then `arrive`;
//! `schedule` calls `begin`, vLLM's `schedule()`, then `end`; no Python frame of ours sits in
//! between. Here they read what vLLM did (the requests it freed, KV cache
//! usage, the batch it runs), keep the engine's and the scheduler's clocks and the preemption
//! guard, and drive the `EngineAdapter`. The vLLM attributes read are listed on each method; the
//! plug-in checks the vLLM version it runs on.
//!
//! `autellix_core.PreemptionGuard` is the guard alone, for tests and experiments.

use std::time::Instant;

use autellix_sched as core;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyType, PyWeakrefMethods, PyWeakrefReference};
use rustc_hash::FxHashSet;

use crate::admission_queue::AdmissionQueue;
use crate::engine_adapter::{Added, EngineAdapter, Requests};

/// See the module documentation.
#[pyclass(module = "autellix_core")]
pub struct VllmHooks {
    adapter: Py<EngineAdapter>,
    /// vLLM's waiting queue, which shows vLLM the admissions `begin` sets and `end` clears.
    admission: Py<AdmissionQueue>,
    guard: core::PreemptionGuard,
    block_size: u64,
    own_work_credit: bool,
    whole_batch_possible: bool,
    counts_suffice: bool,
    prefix_caching: bool,
    cache_room: f64,
    /// In engine work units (`autellix.work_units`): the engine's work so far, and the
    /// scheduler's time (the work its calls are credited, so waiting and service share a unit).
    work_clock: f64,
    core_clock: f64,
    capacity: usize,
    batch_was_full: bool,
    /// Ids in vLLM's record of freed requests that may name a live request by the step (rare):
    /// given to a new request since, or freed early by `catch_up` (and so perhaps given again
    /// unnoticed). The step frees them only if vLLM no longer holds them live.
    reused: FxHashSet<String>,
    steps: u64,
    core_seconds: f64,
    requeued: u64,
    protected_call_steps: u64,
    installed: Option<Installed>,
}

/// What `install` was given.
struct Installed {
    /// Held weakly: the scheduler owns these hooks.
    scheduler: Py<PyWeakrefReference>,
    /// vLLM's class whose methods the hooks wrap, looked up at each call (so a patch of them,
    /// such as the plug-in bench's timers, is seen).
    vllm_class: Py<PyType>,
    log_arrival: Py<PyAny>,
    log_refused: Py<PyAny>,
}

impl Installed {
    fn scheduler<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.scheduler
            .bind(py)
            .upgrade()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the scheduler these hooks served is gone"))
    }
}

impl VllmHooks {
    fn installed(&self) -> PyResult<&Installed> {
        self.installed
            .as_ref()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("VllmHooks.install was not called"))
    }

    /// The scheduler served and vLLM's class, taken out so that no borrow of the hooks is held
    /// while Python runs.
    fn served<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyType>)> {
        let hooks = slf.borrow();
        let installed = hooks.installed()?;
        Ok((installed.scheduler(slf.py())?, installed.vllm_class.bind(slf.py()).clone()))
    }

    /// Frees what vLLM freed since its last step (`Scheduler.finished_req_ids`, and `requests`
    /// for an id given again); returns how many finished calls the scheduler will hear of.
    fn free_finished(
        &self,
        py: Python<'_>,
        adapter: &mut EngineAdapter,
        scheduler: &Bound<'_, PyAny>,
        freed: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        // Almost every step reuses no id: then no id is even hashed.
        let reused = |id: &Bound<'_, PyString>| -> PyResult<bool> {
            Ok(!self.reused.is_empty() && self.reused.contains(id.to_str()?))
        };
        adapter.free_each(freed, |id| Ok(reused(id)? && is_live(py, scheduler, id)?))
    }

    /// The step vLLM scheduled (`num_scheduled_tokens`, `total_num_scheduled_tokens` of its
    /// `SchedulerOutput`) moves the clocks and is credited at the next `begin`, each call its own
    /// work or, without own-work crediting, the step's. Credited as scheduled: vLLM runs every step
    /// it schedules, and its `update_from_output` is left alone.
    fn credit(
        &mut self,
        py: Python<'_>,
        adapter: &mut EngineAdapter,
        scheduler_output: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let scheduled = scheduler_output.getattr(intern!(py, "num_scheduled_tokens"))?.cast_into::<PyDict>()?;
        let calls = scheduled.len();
        if calls == 0 {
            return Ok(());
        }
        let total: u64 = scheduler_output.getattr(intern!(py, "total_num_scheduled_tokens"))?.extract()?;
        if self.own_work_credit {
            let (work, mean_call_work) = adapter.ran_tokens(py, &scheduled, total, self.whole_batch_possible)?;
            self.work_clock += work;
            self.core_clock += mean_call_work;
            return Ok(());
        }
        let work = adapter.config().step_units(total, calls as u64);
        self.work_clock += work;
        self.core_clock += work;
        if self.whole_batch_possible && adapter.counts_match(py, calls) {
            adapter.ran_all(work);
        } else {
            let named: Vec<Bound<'_, PyString>> = scheduled
                .keys()
                .iter()
                .map(|k| k.cast_into::<PyString>().map_err(PyErr::from))
                .collect::<PyResult<_>>()?;
            adapter.ran_request_ids(&ids(&named)?, work);
        }
        Ok(())
    }

    /// The running requests whose recompute costs more than waiting (`Scheduler.running`:
    /// `request_id`, `num_computed_tokens`). A preempted call's full blocks stay cached while the
    /// prefix cache has room to spare (`kv_cache_manager.usage`); then only its partial block
    /// is recomputed, and the pass over the batch is skipped when no partial block costs that much.
    fn protected<'py>(&self, py: Python<'py>, scheduler: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
        let cached = self.prefix_caching && {
            let usage: f64 =
                scheduler.getattr(intern!(py, "kv_cache_manager"))?.getattr(intern!(py, "usage"))?.extract()?;
            usage < self.cache_room
        };
        let mut protected = Vec::new();
        if !self.guard.may_protect(self.block_size, cached) {
            return Ok(protected);
        }
        for request in scheduler.getattr(intern!(py, "running"))?.try_iter()? {
            let request = request?;
            let computed: u64 = request.getattr(intern!(py, "num_computed_tokens"))?.extract()?;
            if self.guard.protects(computed, self.block_size, cached) {
                protected.push(request.getattr(intern!(py, "request_id"))?.cast_into::<PyString>()?);
            }
        }
        Ok(protected)
    }
}

/// Whether vLLM still runs or queues the request of this id.
fn is_live(py: Python<'_>, scheduler: &Bound<'_, PyAny>, request_id: &Bound<'_, PyString>) -> PyResult<bool> {
    let requests = scheduler.getattr(intern!(py, "requests"))?.cast_into::<PyDict>()?;
    match requests.get_item(request_id)? {
        Some(request) => Ok(!request.call_method0(intern!(py, "is_finished"))?.is_truthy()?),
        None => Ok(false),
    }
}

fn ids<'a>(requests: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    requests.iter().map(|r| r.to_str()).collect()
}

#[pymethods]
impl VllmHooks {
    #[new]
    #[pyo3(signature = (adapter, admission, block_size, *, preemption_guard=true, own_work_credit=true, whole_batch_possible=false, counts_suffice=true, prefix_caching=true, cache_room))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        adapter: Py<EngineAdapter>,
        admission: Py<AdmissionQueue>,
        block_size: u64,
        preemption_guard: bool,
        own_work_credit: bool,
        whole_batch_possible: bool,
        counts_suffice: bool,
        prefix_caching: bool,
        cache_room: f64,
    ) -> Self {
        let per_unit = adapter.borrow(py).config().prefill_tokens_per_unit;
        VllmHooks {
            adapter,
            admission,
            guard: core::PreemptionGuard::new(preemption_guard, per_unit),
            block_size,
            own_work_credit,
            whole_batch_possible,
            counts_suffice,
            prefix_caching,
            cache_room,
            work_clock: 0.0,
            core_clock: 0.0,
            capacity: 0,
            batch_was_full: false,
            reused: FxHashSet::default(),
            steps: 0,
            core_seconds: 0.0,
            requeued: 0,
            protected_call_steps: 0,
            installed: None,
        }
    }

    /// Makes `schedule` and `add_request` below serve `scheduler` (an instance of a subclass of
    /// `vllm_class`, vLLM's `Scheduler` or `AsyncScheduler`): around vLLM's own, they call
    /// `log_arrival(request_id, program_id, new_session, ignored)` and `log_refused(refusals)`
    /// when there is something to log, and `scheduler._preempt_for_priority(requests)` when the
    /// core preempts.
    fn install(
        &mut self,
        scheduler: &Bound<'_, PyAny>,
        vllm_class: Bound<'_, PyType>,
        log_arrival: Py<PyAny>,
        log_refused: Py<PyAny>,
    ) -> PyResult<()> {
        self.installed = Some(Installed {
            scheduler: PyWeakrefReference::new(scheduler)?.unbind(),
            vllm_class: vllm_class.unbind(),
            log_arrival,
            log_refused,
        });
        Ok(())
    }

    /// The scheduler's `schedule()` once installed: `begin`, vLLM's `schedule()`, `end`.
    #[pyo3(signature = (throttle_prefills=false))]
    fn schedule<'py>(slf: &Bound<'py, Self>, throttle_prefills: bool) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (scheduler, vllm_class) = Self::served(slf)?;
        let told = slf.borrow_mut().begin(py, &scheduler)?;
        if let Some((preempt, refused)) = told {
            if !refused.is_empty() {
                let log_refused = slf.borrow().installed()?.log_refused.clone_ref(py);
                log_refused.call1(py, (refused,))?;
            }
            if !preempt.is_empty() {
                scheduler.call_method1(intern!(py, "_preempt_for_priority"), (preempt,))?;
            }
        }
        let output = vllm_class.getattr(intern!(py, "schedule"))?.call1((&scheduler, throttle_prefills))?;
        slf.borrow_mut().end(py, &scheduler, &output)?;
        Ok(output)
    }

    /// The scheduler's `add_request()` once installed: vLLM's, then `arrive`.
    fn add_request(slf: &Bound<'_, Self>, request: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (scheduler, vllm_class) = Self::served(slf)?;
        vllm_class.getattr(intern!(py, "add_request"))?.call1((&scheduler, request))?;
        let told = slf.borrow_mut().arrive(py, &scheduler, request)?;
        if let Some((program, new_session, ignored)) = told {
            let log_arrival = slf.borrow().installed()?.log_arrival.clone_ref(py);
            let request_id = request.getattr(intern!(py, "request_id"))?;
            log_arrival.call1(py, (request_id, program, new_session, ignored))?;
        }
        Ok(())
    }

    #[getter]
    fn work_clock(&self) -> f64 {
        self.work_clock
    }

    #[getter]
    fn core_clock(&self) -> f64 {
        self.core_clock
    }

    #[getter]
    fn slot_wait(&self) -> Option<f64> {
        self.guard.slot_wait()
    }

    /// After vLLM's `add_request`: a new request becomes a call of its program (the rules of
    /// `EngineAdapter.add_vllm_request`); a streaming update of a live request, which vLLM folds
    /// into the request it has, is none. Reads `requests` only for an id that is live here.
    /// Returns None, or what to log: (program id, the session if new, what was ignored).
    fn arrive(
        &mut self,
        py: Python<'_>,
        scheduler: &Bound<'_, PyAny>,
        request: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Added>> {
        let request_id = request.getattr(intern!(py, "request_id"))?.cast_into::<PyString>()?;
        let mut adapter = self.adapter.borrow_mut(py);
        // Every request vLLM holds is live here until its free is heard of at the next step, so
        // an id not live here is a new request. One that is live names either the request vLLM
        // has (a streaming update) or one vLLM freed since its last step (the id given again).
        let id = request_id.to_str()?;
        if adapter.is_live(id) {
            let requests = scheduler.getattr(intern!(py, "requests"))?.cast_into::<PyDict>()?;
            if !requests.get_item(&request_id)?.is_some_and(|kept| kept.is(request)) {
                return Ok(None);
            }
            // The id given again: the old call is freed now, the new one stays live at the next step.
            adapter.free(id);
            self.reused.insert(id.to_owned());
        }
        let (program, new_session, ignored) = adapter.add_vllm(request, &request_id)?;
        Ok((new_session.is_some() || !ignored.is_empty()).then_some((program, new_session, ignored)))
    }

    /// Before vLLM's `schedule()`: frees, the step's news, the guard, then the scheduler's
    /// decision. The admissions, most urgent first, go to the admission queue; returns None, or
    /// (requests to preempt, least urgent first; what the scheduler refused, for the log). Reads
    /// `max_num_active_reqs`, `num_waiting_for_streaming_input` and `finished_req_ids`;
    /// `kv_cache_manager.usage` and `running` only when a swap can happen.
    fn begin(&mut self, py: Python<'_>, scheduler: &Bound<'_, PyAny>) -> PyResult<Option<(Requests, Vec<String>)>> {
        let started = Instant::now();
        let active: usize = scheduler.getattr(intern!(py, "max_num_active_reqs"))?.extract()?;
        let streaming: usize = scheduler.getattr(intern!(py, "num_waiting_for_streaming_input"))?.extract()?;
        let capacity = active.saturating_sub(streaming);
        self.capacity = capacity;
        let adapter = self.adapter.clone_ref(py);
        let mut adapter = adapter.borrow_mut(py);
        let freed = scheduler.getattr(intern!(py, "finished_req_ids"))?;
        if freed.is_truthy()? {
            let finished = self.free_finished(py, &mut adapter, scheduler, &freed)?;
            self.guard.observe_completions(finished, self.work_clock, self.batch_was_full);
        }
        let now = self.core_clock;
        let refused = adapter.apply(py, now);
        // Which calls to protect is judged on the state after this step's news, and only when a
        // swap can happen (else the KV cache's usage is not even read).
        let protected =
            if self.guard.is_active() && adapter.may_swap(py) { self.protected(py, scheduler)? } else { Vec::new() };
        self.protected_call_steps += protected.len() as u64;
        let (admit, preempt) = adapter.decide_requests(py, now, capacity, &ids(&protected)?)?;
        self.admission.borrow_mut(py).set(py, admit)?;
        self.core_seconds += started.elapsed().as_secs_f64();
        Ok((!preempt.is_empty() || !refused.is_empty()).then_some((preempt, refused)))
    }

    /// After vLLM's `schedule()`, given what it returned: clears the admissions vLLM did not
    /// take; hands back to the scheduler every call it counts as running that vLLM does not run,
    /// whatever the reason (no slot, token budget or KV room; a start put off); and credits the
    /// step to the calls it runs (see `credit`). vLLM runs only what the scheduler admitted, so
    /// equal counts mean there is nothing to hand back. Reads `running`. Returns how many went back.
    fn end(
        &mut self,
        py: Python<'_>,
        scheduler: &Bound<'_, PyAny>,
        scheduler_output: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        self.admission.borrow_mut(py).clear();
        self.reused.clear(); // vLLM's record of freed requests starts afresh
        self.steps += 1;
        let running = scheduler.getattr(intern!(py, "running"))?.cast_into::<PyList>()?;
        self.batch_was_full = running.len() >= self.capacity;
        let adapter = self.adapter.clone_ref(py);
        let mut adapter = adapter.borrow_mut(py);
        let mut back = 0;
        if !(self.counts_suffice && adapter.counts_match(py, running.len())) {
            let running_ids: Vec<Bound<'_, PyString>> = running
                .iter()
                .map(|request| Ok(request.getattr(intern!(py, "request_id"))?.cast_into::<PyString>()?))
                .collect::<PyResult<_>>()?;
            back = adapter.requeue_all_but_requests(py, &ids(&running_ids)?, self.core_clock)?;
            self.requeued += back as u64;
        }
        self.credit(py, &mut adapter, scheduler_output)?;
        Ok(back)
    }

    /// What an idle engine would tell the scheduler at its next step, told now (for snapshots):
    /// the requests vLLM freed, and the service and arrivals since. Returns what it refused.
    fn catch_up(&mut self, py: Python<'_>, scheduler: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let adapter = self.adapter.clone_ref(py);
        let mut adapter = adapter.borrow_mut(py);
        let freed = scheduler.getattr(intern!(py, "finished_req_ids"))?;
        self.free_finished(py, &mut adapter, scheduler, &freed)?;
        for request_id in freed.try_iter()? {
            self.reused.insert(request_id?.cast::<PyString>()?.to_str()?.to_owned());
        }
        Ok(adapter.apply(py, self.core_clock))
    }

    /// Counters: steps, core_seconds (in `begin`), requeued, protected_call_steps.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = PyDict::new(py);
        stats.set_item("steps", self.steps)?;
        stats.set_item("core_seconds", self.core_seconds)?;
        stats.set_item("requeued", self.requeued)?;
        stats.set_item("protected_call_steps", self.protected_call_steps)?;
        Ok(stats)
    }
}

/// The preemption guard alone (`autellix_sched::preemption_guard`).
#[pyclass(module = "autellix_core", name = "PreemptionGuard")]
pub struct PyPreemptionGuard {
    inner: core::PreemptionGuard,
}

#[pymethods]
impl PyPreemptionGuard {
    #[new]
    #[pyo3(signature = (prefill_tokens_per_unit, enabled=true))]
    fn new(prefill_tokens_per_unit: f64, enabled: bool) -> Self {
        PyPreemptionGuard { inner: core::PreemptionGuard::new(enabled, prefill_tokens_per_unit) }
    }

    #[getter]
    fn slot_wait(&self) -> Option<f64> {
        self.inner.slot_wait()
    }

    #[getter]
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn may_protect(&self, block_size: u64, cached: bool) -> bool {
        self.inner.may_protect(block_size, cached)
    }

    fn observe_completions(&mut self, count: usize, work_clock: f64, batch_full: bool) {
        self.inner.observe_completions(count, work_clock, batch_full)
    }

    /// The keys among `running` (key, computed tokens) whose recompute costs more than waiting.
    fn protected(&self, running: &Bound<'_, PyAny>, block_size: u64, cached: bool) -> PyResult<Vec<Py<PyAny>>> {
        let mut protected = Vec::new();
        for item in running.try_iter()? {
            let (key, computed): (Py<PyAny>, u64) = item?.extract()?;
            if self.inner.protects(computed, block_size, cached) {
                protected.push(key);
            }
        }
        Ok(protected)
    }
}

/// Tokens a call preempted now would prefill again (`autellix_sched::preemption_guard`).
#[pyfunction]
pub fn recompute_tokens(computed_tokens: u64, block_size: u64, cached: bool) -> u64 {
    core::preemption_guard::recompute_tokens(computed_tokens, block_size, cached)
}

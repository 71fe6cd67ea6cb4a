//! `autellix_core.EngineAdapter`: the vLLM plug-in's bookkeeping (`autellix_sched::EngineAdapter`)
//! over one `Scheduler`, plus the request object each live call was added with, so a decision
//! comes back as the objects vLLM queues: no id to look up or string to build per admitted call.
//! Request objects are held weakly: the engine owns them and frees them in its own time.

use autellix_sched as core;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyString, PyWeakrefMethods, PyWeakrefReference};
use rustc_hash::FxHashMap;

use crate::{CoreErr, CoreResult, Scheduler};

#[pyclass(module = "autellix_core")]
pub struct EngineAdapter {
    inner: core::EngineAdapter,
    scheduler: Py<Scheduler>,
    /// Each live call's handle, until its request is freed.
    requests: FxHashMap<u64, Handle>,
}

/// What a live call's decisions name it by: the object given to `add_request`, else its request id.
enum Handle {
    Request(Py<PyWeakrefReference>),
    Id(Py<PyString>),
}

impl Handle {
    /// None once the engine dropped the request.
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            Handle::Request(request) => request.bind(py).upgrade().map(Bound::unbind),
            Handle::Id(id) => Some(id.clone_ref(py).into_any()),
        }
    }
}

/// Requests as their calls were added (see `Handle`).
type Requests = Vec<Py<PyAny>>;

fn strs(ids: &[PyBackedStr]) -> Vec<&str> {
    ids.iter().map(|id| &**id).collect()
}

impl EngineAdapter {
    fn requests_of(&self, py: Python<'_>, calls: &[u64]) -> Requests {
        calls.iter().filter_map(|call| self.requests.get(call)?.get(py)).collect()
    }

    /// A decision in the requests its calls were added with.
    fn decision(&self, py: Python<'_>, decision: &core::Decision) -> (Requests, Requests) {
        (self.requests_of(py, &decision.admit), self.requests_of(py, &decision.preempt))
    }
}

#[pymethods]
impl EngineAdapter {
    #[new]
    #[pyo3(signature = (scheduler, session_programs, solo_programs, prefill_tokens_per_unit, session_memory=65536, parent_memory=65536))]
    fn new(
        scheduler: Py<Scheduler>,
        session_programs: u64,
        solo_programs: u64,
        prefill_tokens_per_unit: f64,
        session_memory: usize,
        parent_memory: usize,
    ) -> CoreResult<Self> {
        let config = core::AdapterConfig {
            session_programs,
            solo_programs,
            session_memory,
            parent_memory,
            prefill_tokens_per_unit,
        };
        Ok(EngineAdapter { inner: core::EngineAdapter::new(config)?, scheduler, requests: FxHashMap::default() })
    }

    #[getter]
    fn scheduler(&self, py: Python<'_>) -> Py<Scheduler> {
        self.scheduler.clone_ref(py)
    }

    #[getter]
    fn num_requests(&self) -> usize {
        self.inner.num_requests()
    }

    #[getter]
    fn num_sessions(&self) -> usize {
        self.inner.num_sessions()
    }

    #[getter]
    fn num_finished_pending(&self) -> usize {
        self.inner.num_finished_pending()
    }

    fn num_running(&self, py: Python<'_>) -> usize {
        self.inner.num_running(&self.scheduler.borrow(py).inner)
    }

    fn counts_match(&self, py: Python<'_>, engine_running: usize) -> bool {
        self.inner.counts_match(&self.scheduler.borrow(py).inner, engine_running)
    }

    #[pyo3(
        signature = (request_id, program_id, session, parents=Vec::new(), request=None),
        text_signature = "(self, /, request_id, program_id, session, parents=(), request=None)"
    )]
    fn add_request(
        &mut self,
        request_id: &Bound<'_, PyString>,
        program_id: Option<u64>,
        session: Option<&str>,
        parents: Vec<PyBackedStr>,
        request: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u64, u64, bool)> {
        let handle = match request {
            Some(request) => Handle::Request(PyWeakrefReference::new(request)?.unbind()),
            None => Handle::Id(request_id.clone().unbind()),
        };
        let arrival = self
            .inner
            .add_request(request_id.to_str()?, program_id, session, &strs(&parents))
            .map_err(CoreErr::from)?;
        self.requests.insert(arrival.call, handle);
        Ok((arrival.call, arrival.program, arrival.new_session))
    }

    fn free_request(&mut self, request_id: &str) -> bool {
        self.inner.free_request(request_id).is_some_and(|call| self.requests.remove(&call).is_some())
    }

    /// Frees every request named (vLLM's set of the requests it freed since its last step);
    /// returns how many finished calls the scheduler will hear of at the next `apply`.
    fn free_requests(&mut self, request_ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        for request_id in request_ids.try_iter()? {
            let request_id = request_id?;
            if let Some(call) = self.inner.free_request(request_id.cast::<PyString>()?.to_str()?) {
                self.requests.remove(&call);
            }
        }
        Ok(self.inner.num_finished_pending())
    }

    fn ran_all(&mut self, work: f64) {
        self.inner.ran_all(work)
    }

    fn ran_requests(&mut self, request_ids: Vec<PyBackedStr>, work: f64) {
        self.inner.ran_requests(&strs(&request_ids), work)
    }

    #[pyo3(signature = (scheduled, total_tokens, whole_batch_possible=false))]
    fn ran_tokens(
        &mut self,
        py: Python<'_>,
        scheduled: &Bound<'_, PyDict>,
        total_tokens: u64,
        whole_batch_possible: bool,
    ) -> PyResult<()> {
        let whole_batch =
            whole_batch_possible && self.inner.counts_match(&self.scheduler.borrow(py).inner, scheduled.len());
        if whole_batch && total_tokens == scheduled.len() as u64 {
            self.inner.ran_all(1.0); // a decode-only step: one token, one unit each
            return Ok(());
        }
        let mut named: Vec<(PyBackedStr, u64)> = Vec::new();
        for (request, tokens) in scheduled.iter() {
            let tokens: u64 = tokens.extract()?;
            if !whole_batch || tokens > 1 {
                named.push((request.extract()?, tokens));
            }
        }
        let named = named.iter().map(|(request, tokens)| (&**request, *tokens));
        if whole_batch {
            self.inner.ran_all_tokens(named);
        } else {
            self.inner.ran_tokens(named);
        }
        Ok(())
    }

    fn apply(&mut self, py: Python<'_>, now: f64) -> Vec<String> {
        self.inner.apply(&mut self.scheduler.borrow_mut(py).inner, now)
    }

    fn step(&mut self, py: Python<'_>, now: f64, capacity: usize) -> CoreResult<(Requests, Requests, Vec<String>)> {
        let mut scheduler = self.scheduler.borrow_mut(py);
        let (decision, refused) = self.inner.step_calls(&mut scheduler.inner, now, capacity)?;
        let (admit, preempt) = self.decision(py, decision);
        Ok((admit, preempt, refused))
    }

    fn may_swap(&self, py: Python<'_>) -> bool {
        self.scheduler.borrow_mut(py).inner.may_swap()
    }

    #[pyo3(signature = (now, capacity, protected=Vec::new()), text_signature = "(self, /, now, capacity, protected=())")]
    fn decide(
        &mut self,
        py: Python<'_>,
        now: f64,
        capacity: usize,
        protected: Vec<PyBackedStr>,
    ) -> CoreResult<(Requests, Requests)> {
        let mut scheduler = self.scheduler.borrow_mut(py);
        let decision = self.inner.decide_calls(&mut scheduler.inner, now, capacity, &strs(&protected))?;
        Ok(self.decision(py, decision))
    }

    fn requeue_all_but(&mut self, py: Python<'_>, running_requests: Vec<PyBackedStr>, now: f64) -> CoreResult<usize> {
        Ok(self.inner.requeue_all_but(&mut self.scheduler.borrow_mut(py).inner, &strs(&running_requests), now)?)
    }

    fn end_program(&mut self, py: Python<'_>, program_id: u64) -> bool {
        self.inner.end_program(&mut self.scheduler.borrow_mut(py).inner, program_id)
    }

    fn call_id(&self, request_id: &str) -> Option<u64> {
        self.inner.call_id(request_id)
    }

    fn request_id(&self, call_id: u64) -> Option<&str> {
        self.inner.request_id(call_id)
    }

    /// The request a live call was added with.
    fn request(&self, py: Python<'_>, call_id: u64) -> Option<Py<PyAny>> {
        self.requests.get(&call_id)?.get(py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let stats = PyDict::new(py);
        stats.set_item("rejected_batches", s.rejected_batches)?;
        Ok(stats)
    }

    fn __repr__(&self) -> String {
        format!("EngineAdapter(requests={}, sessions={})", self.inner.num_requests(), self.inner.num_sessions())
    }
}

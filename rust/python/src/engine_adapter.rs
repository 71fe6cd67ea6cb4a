//! `autellix_core.EngineAdapter`: the vLLM plug-in's bookkeeping (`autellix_sched::EngineAdapter`)
//! over one `Scheduler`, plus the request object each live call was added with, so a decision
//! comes back as the objects vLLM queues: no id to look up or string to build per admitted call.
//! Request objects are held weakly: the engine owns them and frees them in its own time.

use autellix_sched as core;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyDict, PyInt, PyString, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{ffi, intern};

use crate::{CoreErr, CoreResult, Scheduler};

#[pyclass(module = "autellix_core")]
pub struct EngineAdapter {
    /// With each live call's handle, until its request is freed.
    inner: core::EngineAdapter<Handle>,
    scheduler: Py<Scheduler>,
    keys: Option<ExtraArgsKeys>,
}

/// The `SamplingParams.extra_args` keys a vLLM request names its program, session and parents
/// by (`autellix.contract`), read by `add_vllm_request`.
struct ExtraArgsKeys {
    program: Py<PyString>,
    session: Py<PyString>,
    parents: Py<PyString>,
    calls_left: Py<PyString>,
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

/// A vLLM request added: (its program, the session if the adapter had not seen it, what was
/// ignored, one line each for the log).
pub(crate) type Added = (u64, Option<String>, Vec<String>);

/// Requests as their calls were added (see `Handle`).
pub(crate) type Requests = Vec<Py<PyAny>>;

fn strs(ids: &[PyBackedStr]) -> Vec<&str> {
    ids.iter().map(|id| &**id).collect()
}

/// A client's program id: an int (not a bool) below `limit`.
fn client_program(given: &Bound<'_, PyAny>, limit: u64) -> Option<u64> {
    if given.is_instance_of::<PyBool>() || !given.is_instance_of::<PyInt>() {
        return None;
    }
    given.extract::<u64>().ok().filter(|&program| program < limit)
}

/// Parent request ids as given: a list of ids (each as `str()` spells it) or one id; None for
/// anything else.
fn parent_ids(given: &Bound<'_, PyAny>) -> PyResult<Option<Vec<String>>> {
    if let Ok(one) = given.cast::<PyString>() {
        return Ok(Some(vec![one.to_str()?.to_owned()]));
    }
    let Ok(items) = given.try_iter() else { return Ok(None) };
    items.map(|item| Ok(item?.str()?.to_str()?.to_owned())).collect::<PyResult<_>>().map(Some)
}

/// What a vLLM request names (`add_vllm_request`): a client's program id, else a session; parent
/// request ids; and what was ignored, one line each for the log.
struct Named {
    program: Option<u64>,
    session: Option<PyBackedStr>,
    parents: Vec<String>,
    calls_left: Option<u32>,
    ignored: Vec<String>,
}

impl Named {
    fn read(request: &Bound<'_, PyAny>, keys: &ExtraArgsKeys, client_limit: u64) -> PyResult<Self> {
        let py = request.py();
        let params = request.getattr(intern!(py, "sampling_params"))?;
        let args =
            if params.is_none() { None } else { params.getattr(intern!(py, "extra_args"))?.cast_into::<PyDict>().ok() };
        let arg = |key: &Py<PyString>| match &args {
            Some(args) => args.get_item(key.bind(py)).map(|value| value.filter(|v| !v.is_none())),
            None => Ok(None),
        };
        let mut ignored = Vec::new();
        let program = match arg(&keys.program)? {
            Some(given) => {
                let program = client_program(&given, client_limit);
                if program.is_none() {
                    ignored.push(format!("program id {} (expected an int in [0, {client_limit}))", given.repr()?));
                }
                program
            }
            None => None,
        };
        // A client's program id decides the program; only without one is the session read.
        let session = match program {
            Some(_) => None,
            None => {
                let session_id = request.getattr(intern!(py, "session_id"))?;
                if session_id.is_truthy()? {
                    Some(session_id)
                } else {
                    arg(&keys.session)?
                }
            }
        };
        let session: Option<PyBackedStr> = match session.map(|s| s.cast_into::<PyString>()) {
            Some(Ok(session)) => Some(session.try_into()?),
            _ => None,
        };
        let parents = match arg(&keys.parents)? {
            Some(given) if given.is_truthy()? => parent_ids(&given)?.unwrap_or_else(|| {
                ignored.push(format!(
                    "parents {} (expected a list of request ids)",
                    given.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                ));
                Vec::new()
            }),
            _ => Vec::new(),
        };
        let calls_left = match arg(&keys.calls_left)? {
            Some(given) => {
                let calls_left = given.extract::<u32>().ok().filter(|&n| n >= 1 && !given.is_instance_of::<PyBool>());
                if calls_left.is_none() {
                    ignored.push(format!("calls left {} (expected an int >= 1)", given.repr()?));
                }
                calls_left
            }
            None => None,
        };
        Ok(Named { program, session, parents, calls_left, ignored })
    }
}

/// The entries of `dict` whose value is not `skip`, leaving the others' keys untouched. Between
/// two engine steps each object is a cache miss, and most of a step's batch are decode calls, each
/// counting the interpreter's one cached 1: iterating the dict would take (and drop) a reference
/// to every key.
fn entries_but<'py>(
    dict: &Bound<'py, PyDict>,
    skip: &Bound<'py, PyAny>,
) -> Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let py = dict.py();
    let (mut position, mut key, mut value) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    let mut entries = Vec::new();
    // SAFETY: the GIL is held (`py`), and no Python code runs in the loop, so the dict does not
    // change under it; `PyDict_Next` lends its key and value, and the kept ones are taken with a
    // new reference before the loop moves on.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut position, &mut key, &mut value) } != 0 {
        if value != skip.as_ptr() {
            entries.push(unsafe { (Bound::from_borrowed_ptr(py, key), Bound::from_borrowed_ptr(py, value)) });
        }
    }
    entries
}

impl EngineAdapter {
    pub(crate) fn config(&self) -> &core::AdapterConfig {
        self.inner.config()
    }

    /// Whether a request of this id arrived and was not freed since.
    pub(crate) fn is_live(&self, request_id: &str) -> bool {
        self.inner.is_live(request_id)
    }

    /// Forgets a freed request; true if it was one of ours.
    pub(crate) fn free(&mut self, request_id: &str) -> bool {
        self.inner.free_request(request_id).is_some()
    }

    /// Frees every request named but those `still_live` says a new request was given since;
    /// returns how many finished calls the scheduler will hear of at the next `apply`.
    pub(crate) fn free_each(
        &mut self,
        request_ids: &Bound<'_, PyAny>,
        mut still_live: impl FnMut(&Bound<'_, PyString>) -> PyResult<bool>,
    ) -> PyResult<usize> {
        for request_id in request_ids.try_iter()? {
            let request_id = request_id?;
            let request_id = request_id.cast::<PyString>()?;
            if !still_live(request_id)? {
                self.free(request_id.to_str()?);
            }
        }
        Ok(self.inner.num_finished_pending())
    }

    pub(crate) fn ran_request_ids(&mut self, request_ids: &[&str], work: f64) {
        self.inner.ran_requests(request_ids, work)
    }

    pub(crate) fn decide_requests(
        &mut self,
        py: Python<'_>,
        now: f64,
        capacity: usize,
        protected: &[&str],
    ) -> CoreResult<(Requests, Requests)> {
        let mut scheduler = self.scheduler.borrow_mut(py);
        let decision = self.inner.decide_calls(&mut scheduler.inner, now, capacity, protected)?;
        Ok(self.decision(py, decision))
    }

    pub(crate) fn requeue_all_but_requests(&mut self, py: Python<'_>, running: &[&str], now: f64) -> CoreResult<usize> {
        Ok(self.inner.requeue_all_but(&mut self.scheduler.borrow_mut(py).inner, running, now)?)
    }

    fn add(
        &mut self,
        request_id: &Bound<'_, PyString>,
        program: Option<u64>,
        session: Option<&str>,
        parents: &[&str],
        request: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<core::Arrival> {
        let handle = match request {
            Some(request) => Handle::Request(PyWeakrefReference::new(request)?.unbind()),
            None => Handle::Id(request_id.clone().unbind()),
        };
        Ok(self
            .inner
            .add_request_with(request_id.to_str()?, program, session, parents, handle)
            .map_err(CoreErr::from)?)
    }

    /// `add_vllm_request`, given the request's id.
    pub(crate) fn add_vllm(&mut self, request: &Bound<'_, PyAny>, request_id: &Bound<'_, PyString>) -> PyResult<Added> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("add_vllm_request needs the adapter built with extra_args_keys"))?;
        let named = Named::read(request, keys, self.inner.config().session_programs)?;
        let parents: Vec<&str> = named.parents.iter().map(String::as_str).collect();
        let arrival = self.add(request_id, named.program, named.session.as_deref(), &parents, Some(request))?;
        if let Some(calls_left) = named.calls_left {
            self.inner.tell_calls_left(arrival.program, calls_left);
        }
        let new_session = arrival.new_session.then(|| named.session.as_deref().unwrap_or_default().to_owned());
        Ok((arrival.program, new_session, named.ignored))
    }

    fn requests_of(&self, py: Python<'_>, calls: &[u64]) -> Requests {
        calls.iter().filter_map(|call| self.inner.handle(*call)?.get(py)).collect()
    }

    /// A decision in the requests its calls were added with.
    fn decision(&self, py: Python<'_>, decision: &core::Decision) -> (Requests, Requests) {
        (self.requests_of(py, &decision.admit), self.requests_of(py, &decision.preempt))
    }
}

#[pymethods]
impl EngineAdapter {
    #[new]
    #[pyo3(signature = (scheduler, session_programs, solo_programs, prefill_tokens_per_unit, session_memory=65536, parent_memory=65536, extra_args_keys=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        scheduler: Py<Scheduler>,
        session_programs: u64,
        solo_programs: u64,
        prefill_tokens_per_unit: f64,
        session_memory: usize,
        parent_memory: usize,
        extra_args_keys: Option<(String, String, String, String)>,
    ) -> CoreResult<Self> {
        let config = core::AdapterConfig {
            session_programs,
            solo_programs,
            session_memory,
            parent_memory,
            prefill_tokens_per_unit,
        };
        let keys = extra_args_keys.map(|(program, session, parents, calls_left)| ExtraArgsKeys {
            program: PyString::intern(py, &program).unbind(),
            session: PyString::intern(py, &session).unbind(),
            parents: PyString::intern(py, &parents).unbind(),
            calls_left: PyString::intern(py, &calls_left).unbind(),
        });
        Ok(EngineAdapter { inner: core::EngineAdapter::with_handles(config)?, scheduler, keys })
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

    pub(crate) fn counts_match(&self, py: Python<'_>, engine_running: usize) -> bool {
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
        let arrival = self.add(request_id, program_id, session, &strs(&parents), request)?;
        Ok((arrival.call, arrival.program, arrival.new_session))
    }

    /// `add_request` for a vLLM `Request`, read here in one crossing: its id, `session_id`, and
    /// the program, session and parents its `extra_args` name under `extra_args_keys`.
    fn add_vllm_request(&mut self, py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<Added> {
        let request_id = request.getattr(intern!(py, "request_id"))?.cast_into::<PyString>()?;
        self.add_vllm(request, &request_id)
    }

    fn free_request(&mut self, request_id: &str) -> bool {
        self.free(request_id)
    }

    /// Frees every request named (vLLM's set of the requests it freed since its last step);
    /// returns how many finished calls the scheduler will hear of at the next `apply`.
    fn free_requests(&mut self, request_ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.free_each(request_ids, |_| Ok(false))
    }

    pub(crate) fn ran_all(&mut self, work: f64) {
        self.inner.ran_all(work)
    }

    fn ran_requests(&mut self, request_ids: Vec<PyBackedStr>, work: f64) {
        self.ran_request_ids(&strs(&request_ids), work)
    }

    /// Returns how far the step moved the engine's clock and, under own-work crediting, the
    /// scheduler's (`step_units`, `mean_call_units`), so the plug-in does no arithmetic of its own.
    #[pyo3(signature = (scheduled, total_tokens, whole_batch_possible=false))]
    pub(crate) fn ran_tokens(
        &mut self,
        py: Python<'_>,
        scheduled: &Bound<'_, PyDict>,
        total_tokens: u64,
        whole_batch_possible: bool,
    ) -> PyResult<(f64, f64)> {
        let calls = scheduled.len();
        let config = self.inner.config();
        let clocks =
            (config.step_units(total_tokens, calls as u64), config.mean_call_units(total_tokens, calls as u64));
        let whole_batch = whole_batch_possible && self.inner.counts_match(&self.scheduler.borrow(py).inner, calls);
        if whole_batch && total_tokens == calls as u64 {
            self.inner.ran_all(1.0); // a decode-only step: one token, one unit each
            return Ok(clocks);
        }
        let mut named: Vec<(PyBackedStr, u64)> = Vec::new();
        // A decode call's count is the interpreter's one cached 1: telling it by identity skips
        // most of the batch.
        let entries = if whole_batch {
            entries_but(scheduled, 1u64.into_pyobject(py)?.as_any())
        } else {
            scheduled.iter().collect()
        };
        for (request, tokens) in entries {
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
        Ok(clocks)
    }

    pub(crate) fn apply(&mut self, py: Python<'_>, now: f64) -> Vec<String> {
        self.inner.apply(&mut self.scheduler.borrow_mut(py).inner, now)
    }

    fn step(&mut self, py: Python<'_>, now: f64, capacity: usize) -> CoreResult<(Requests, Requests, Vec<String>)> {
        let mut scheduler = self.scheduler.borrow_mut(py);
        let (decision, refused) = self.inner.step_calls(&mut scheduler.inner, now, capacity)?;
        let (admit, preempt) = self.decision(py, decision);
        Ok((admit, preempt, refused))
    }

    pub(crate) fn may_swap(&self, py: Python<'_>) -> bool {
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
        self.decide_requests(py, now, capacity, &strs(&protected))
    }

    fn requeue_all_but(&mut self, py: Python<'_>, running_requests: Vec<PyBackedStr>, now: f64) -> CoreResult<usize> {
        self.requeue_all_but_requests(py, &strs(&running_requests), now)
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
        self.inner.handle(call_id)?.get(py)
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

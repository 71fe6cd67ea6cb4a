//! The Python module `autellix_core`: thin wrappers over the pure Rust core. Arguments are
//! extracted once per call (one crossing per engine step with `Scheduler.step`); core errors
//! become the exception classes below, and nothing in the core panics on bad input.

mod admission_queue;
mod engine_adapter;
mod ids;
mod null_scheduler;
mod vllm_hooks;

use autellix_sched as core;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::ids::Ids;

create_exception!(autellix_core, SchedulerError, PyException, "Base class of the errors of autellix_core.");
create_exception!(autellix_core, UnknownCallError, SchedulerError, "The call id is not live.");
create_exception!(autellix_core, DuplicateCallError, SchedulerError, "The call id is already live or listed twice.");
create_exception!(autellix_core, UnknownProgramError, SchedulerError, "The program id is not in the program table.");
create_exception!(autellix_core, CallStateError, SchedulerError, "The call is not in the state the operation needs.");
create_exception!(
    autellix_core,
    UnknownParentError,
    SchedulerError,
    "A named parent is not a call of the same program."
);
create_exception!(autellix_core, ConfigError, SchedulerError, "The scheduler or balancer configuration is invalid.");
create_exception!(
    autellix_core,
    InvalidArgumentError,
    SchedulerError,
    "An argument is out of range (time, seconds, lengths)."
);

/// Carries a core error to Python (a local type, so the conversion is allowed here).
pub(crate) struct CoreErr(core::CoreError);

impl From<core::CoreError> for CoreErr {
    fn from(err: core::CoreError) -> Self {
        CoreErr(err)
    }
}

impl From<CoreErr> for PyErr {
    fn from(CoreErr(err): CoreErr) -> PyErr {
        let message = err.to_string();
        match err {
            core::CoreError::UnknownCall(_) => UnknownCallError::new_err(message),
            core::CoreError::DuplicateCall(_) => DuplicateCallError::new_err(message),
            core::CoreError::UnknownProgram(_) => UnknownProgramError::new_err(message),
            core::CoreError::WrongState { .. } => CallStateError::new_err(message),
            core::CoreError::UnknownParent { .. } => UnknownParentError::new_err(message),
            core::CoreError::InvalidConfig(_) => ConfigError::new_err(message),
            core::CoreError::InvalidArgument(_) => InvalidArgumentError::new_err(message),
        }
    }
}

pub(crate) type CoreResult<T> = Result<T, CoreErr>;

fn invalid_argument(why: String) -> CoreErr {
    CoreErr(core::CoreError::InvalidArgument(why))
}

/// What the engine must do now (see `Scheduler.schedule`).
#[pyclass(module = "autellix_core", frozen, get_all)]
struct Decision {
    /// Waiting calls to start now, most urgent first.
    admit: Vec<u64>,
    /// Running calls to stop now, least urgent first; they wait again and keep their place.
    preempt: Vec<u64>,
    /// Waiting calls the anti-starvation rule moved to the top queue.
    promoted: Vec<u64>,
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!("Decision(admit={:?}, preempt={:?}, promoted={:?})", self.admit, self.preempt, self.promoted)
    }
}

impl From<&core::Decision> for Decision {
    fn from(d: &core::Decision) -> Self {
        Decision { admit: d.admit.clone(), preempt: d.preempt.clone(), promoted: d.promoted.clone() }
    }
}

/// The scheduler of one engine (see the module stub for the full contract).
#[pyclass(module = "autellix_core")]
pub(crate) struct Scheduler {
    pub(crate) inner: core::Scheduler,
}

#[pymethods]
impl Scheduler {
    #[new]
    #[pyo3(signature = (policy="plas", queue_boundaries=None, quanta=None, starvation_ratio=None, stale_after=None))]
    fn new(
        policy: &str,
        queue_boundaries: Option<Vec<f64>>,
        quanta: Option<Vec<f64>>,
        starvation_ratio: Option<f64>,
        stale_after: Option<f64>,
    ) -> CoreResult<Self> {
        let config =
            core::SchedulerConfig::new(policy.parse()?, queue_boundaries, quanta, starvation_ratio, stale_after)?;
        Ok(Scheduler { inner: core::Scheduler::new(config) })
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.config().policy.name()
    }

    #[getter]
    fn queue_boundaries(&self) -> Vec<f64> {
        self.inner.config().queue_boundaries.clone()
    }

    #[getter]
    fn quanta(&self) -> Vec<f64> {
        self.inner.config().quanta.clone()
    }

    #[getter]
    fn starvation_ratio(&self) -> f64 {
        self.inner.config().starvation_ratio
    }

    #[getter]
    fn stale_after(&self) -> f64 {
        self.inner.config().stale_after
    }

    #[getter]
    fn num_queues(&self) -> usize {
        self.inner.config().num_queues()
    }

    #[getter]
    fn num_waiting(&self) -> usize {
        self.inner.num_waiting()
    }

    #[getter]
    fn num_running(&self) -> usize {
        self.inner.num_running()
    }

    #[getter]
    fn num_programs(&self) -> usize {
        self.inner.num_programs()
    }

    fn start_program(&mut self, program_id: u64, now: f64) -> CoreResult<()> {
        Ok(self.inner.start_program(program_id, now)?)
    }

    fn set_calls_left(&mut self, program_id: u64, calls_left: u32, now: f64) -> CoreResult<()> {
        Ok(self.inner.set_calls_left(program_id, calls_left, now)?)
    }

    #[pyo3(signature = (call_id, program_id, now, parents=Vec::new()), text_signature = "(self, /, call_id, program_id, now, parents=())")]
    fn add_call(&mut self, call_id: u64, program_id: u64, now: f64, parents: Vec<u64>) -> CoreResult<()> {
        Ok(self.inner.add_call(call_id, program_id, now, &parents)?)
    }

    #[pyo3(signature = (call_ids, program_ids, now, parents=None))]
    fn add_calls(
        &mut self,
        call_ids: Ids,
        program_ids: Ids,
        now: f64,
        parents: Option<Vec<Vec<u64>>>,
    ) -> CoreResult<()> {
        let parents = parents.unwrap_or_default();
        let new_calls = new_calls(&call_ids, &program_ids, &parents)?;
        Ok(self.inner.add_calls(&new_calls, now)?)
    }

    #[pyo3(signature = (now, capacity, protected=Ids::default()), text_signature = "(self, /, now, capacity, protected=())")]
    fn schedule(&mut self, now: f64, capacity: usize, protected: Ids) -> CoreResult<Decision> {
        Ok(self.inner.schedule_protecting(now, capacity, &protected)?.into())
    }

    #[pyo3(
        signature = (now, capacity, ran=Ids::default(), ran_seconds=0.0, finished=Ids::default(), new_calls=Ids::default(), new_programs=Ids::default(), new_parents=None, ran_all=false, protected=Ids::default()),
        text_signature = "(self, /, now, capacity, ran=(), ran_seconds=0.0, finished=(), new_calls=(), new_programs=(), new_parents=None, ran_all=False, protected=())"
    )]
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        now: f64,
        capacity: usize,
        ran: Ids,
        ran_seconds: f64,
        finished: Ids,
        new_calls: Ids,
        new_programs: Ids,
        new_parents: Option<Vec<Vec<u64>>>,
        ran_all: bool,
        protected: Ids,
    ) -> CoreResult<Decision> {
        let parents = new_parents.unwrap_or_default();
        let arrivals = self::new_calls(&new_calls, &new_programs, &parents)?;
        let input = core::StepInput {
            ran: &ran,
            ran_all,
            ran_seconds,
            finished: &finished,
            new_calls: &arrivals,
            protected: &protected,
        };
        Ok(self.inner.step(input, now, capacity)?.into())
    }

    fn may_swap(&mut self) -> bool {
        self.inner.may_swap()
    }

    fn record_service_each(&mut self, call_ids: Vec<u64>, amounts: Vec<f64>, now: f64) -> CoreResult<()> {
        Ok(self.inner.record_service_each(&call_ids, &amounts, now)?)
    }

    fn record_service(&mut self, call_ids: Ids, seconds: f64, now: f64) -> CoreResult<()> {
        Ok(self.inner.record_service(&call_ids, seconds, now)?)
    }

    fn requeue(&mut self, call_ids: Ids, now: f64) -> CoreResult<()> {
        Ok(self.inner.requeue(&call_ids, now)?)
    }

    fn finish_call(&mut self, call_id: u64, now: f64) -> CoreResult<()> {
        Ok(self.inner.finish_calls(&[call_id], now)?)
    }

    fn finish_calls(&mut self, call_ids: Ids, now: f64) -> CoreResult<()> {
        Ok(self.inner.finish_calls(&call_ids, now)?)
    }

    fn end_program(&mut self, program_id: u64) -> CoreResult<Vec<u64>> {
        Ok(self.inner.end_program(program_id)?)
    }

    fn program_info<'py>(&self, py: Python<'py>, program_id: u64) -> PyResult<Bound<'py, PyDict>> {
        let unknown = || CoreErr(core::CoreError::UnknownProgram(program_id));
        let program = self.inner.program(program_id).ok_or_else(unknown)?;
        let calls = self.inner.program_calls(program_id).ok_or_else(unknown)?;
        let info = PyDict::new(py);
        info.set_item("attained_service", program.attained_service)?;
        info.set_item("critical_path", program.critical_path)?;
        info.set_item("waiting_time", program.waiting_time)?;
        info.set_item("active_calls", program.active_calls())?;
        info.set_item("calls_to_come", program.calls_to_come())?;
        info.set_item("calls", calls)?;
        info.set_item("last_arrival", program.last_arrival)?;
        info.set_item("last_completion", program.last_completion)?;
        Ok(info)
    }

    fn call_info<'py>(&self, py: Python<'py>, call_id: u64) -> PyResult<Bound<'py, PyDict>> {
        let call = self.inner.call(call_id).ok_or(CoreErr(core::CoreError::UnknownCall(call_id)))?;
        let state = match call.state {
            core::CallState::Waiting => "waiting",
            core::CallState::Running => "running",
        };
        let info = PyDict::new(py);
        info.set_item("program_id", call.program)?;
        info.set_item("state", state)?;
        info.set_item("queue", call.queue)?;
        info.set_item("priority", call.priority)?;
        info.set_item("service", call.service)?;
        info.set_item("waiting_time", call.waiting_time)?;
        Ok(info)
    }

    fn queue_of(&self, call_id: u64) -> CoreResult<usize> {
        Ok(self.inner.call(call_id).ok_or(core::CoreError::UnknownCall(call_id))?.queue)
    }

    fn queue_lengths(&self) -> Vec<usize> {
        self.inner.queue_lengths().to_vec()
    }

    fn running(&self) -> Vec<u64> {
        self.inner.running().to_vec()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let stats = PyDict::new(py);
        for (name, value) in [
            ("added", s.added),
            ("admitted", s.admitted),
            ("preemptions", s.preemptions),
            ("promotions", s.promotions),
            ("demotions", s.demotions),
            ("requeues", s.requeues),
            ("finished", s.finished),
            ("dropped_programs", s.dropped_programs),
        ] {
            stats.set_item(name, value)?;
        }
        Ok(stats)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, call_id: u64) -> bool {
        self.inner.call_state(call_id).is_some()
    }

    fn __repr__(&self) -> String {
        format!(
            "Scheduler(policy={:?}, waiting={}, running={}, programs={})",
            self.policy(),
            self.inner.num_waiting(),
            self.inner.num_running(),
            self.inner.num_programs()
        )
    }
}

/// Zips parallel id lists into arrivals; `parents` may be empty (no call names parents).
fn new_calls<'a>(calls: &[u64], programs: &[u64], parents: &'a [Vec<u64>]) -> CoreResult<Vec<core::NewCall<'a>>> {
    if calls.len() != programs.len() || !(parents.is_empty() || parents.len() == calls.len()) {
        return Err(invalid_argument(format!(
            "call ids, program ids and parents must be parallel lists: got {} call ids, {} program ids, {} parent lists",
            calls.len(),
            programs.len(),
            parents.len()
        )));
    }
    Ok(calls
        .iter()
        .zip(programs)
        .enumerate()
        .map(|(i, (&call, &program))| core::NewCall {
            call,
            program,
            parents: parents.get(i).map_or(&[], Vec::as_slice),
        })
        .collect())
}

/// Routes calls across engine replicas (see the module stub).
#[pyclass(module = "autellix_core")]
struct LoadBalancer {
    inner: core::LoadBalancer,
}

#[pymethods]
impl LoadBalancer {
    #[new]
    #[pyo3(signature = (num_engines, short_call_tokens=core::DEFAULT_SHORT_CALL_TOKENS, policy="autellix"), text_signature = "(num_engines, short_call_tokens=2048, policy=\"autellix\")")]
    fn new(num_engines: usize, short_call_tokens: u32, policy: &str) -> CoreResult<Self> {
        Ok(LoadBalancer { inner: core::LoadBalancer::new(num_engines, short_call_tokens, policy.parse()?)? })
    }

    fn route(&mut self, program_id: u64, prompt_tokens: u32) -> usize {
        self.inner.route(program_id, prompt_tokens)
    }

    fn release(&mut self, engine: usize) -> CoreResult<()> {
        Ok(self.inner.release(engine)?)
    }

    fn forget(&mut self, program_id: u64) {
        self.inner.forget(program_id)
    }

    fn pinned(&self, program_id: u64) -> Option<usize> {
        self.inner.pinned(program_id)
    }

    fn loads(&self) -> Vec<u32> {
        self.inner.loads().to_vec()
    }

    #[getter]
    fn num_engines(&self) -> usize {
        self.inner.loads().len()
    }

    #[getter]
    fn short_call_tokens(&self) -> u32 {
        self.inner.short_call_tokens()
    }

    #[getter]
    fn policy(&self) -> &'static str {
        match self.inner.policy() {
            core::BalancerPolicy::Autellix => "autellix",
            core::BalancerPolicy::LeastUsed => "least-used",
            core::BalancerPolicy::RoundRobin => "round-robin",
        }
    }

    fn __repr__(&self) -> String {
        format!("LoadBalancer(policy={:?}, loads={:?})", self.policy(), self.inner.loads())
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Scheduler>()?;
    m.add_class::<Decision>()?;
    m.add_class::<LoadBalancer>()?;
    m.add_class::<engine_adapter::EngineAdapter>()?;
    m.add_class::<admission_queue::AdmissionQueue>()?;
    m.add_class::<vllm_hooks::VllmHooks>()?;
    m.add_class::<null_scheduler::NullScheduler>()?;
    m.add_class::<vllm_hooks::PyPreemptionGuard>()?;
    m.add_function(wrap_pyfunction!(vllm_hooks::recompute_tokens, m)?)?;
    m.add("SchedulerError", py.get_type::<SchedulerError>())?;
    m.add("UnknownCallError", py.get_type::<UnknownCallError>())?;
    m.add("DuplicateCallError", py.get_type::<DuplicateCallError>())?;
    m.add("UnknownProgramError", py.get_type::<UnknownProgramError>())?;
    m.add("CallStateError", py.get_type::<CallStateError>())?;
    m.add("UnknownParentError", py.get_type::<UnknownParentError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InvalidArgumentError", py.get_type::<InvalidArgumentError>())?;
    Ok(())
}

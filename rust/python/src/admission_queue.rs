//! `autellix_core.AdmissionQueue`: vLLM's waiting queue as the plug-in replaces it.
//!
//! vLLM's scheduler admits waiting requests by peeking and popping the head of `self.waiting`
//! until a slot, the token budget or the KV cache runs out. This queue shows it only the requests
//! the core chose for this step, in the core's order: it is false once they are used up, which
//! ends vLLM's admission loop (in vLLM 0.32 the loop is the only reader of the queue's truth
//! value), while its length still counts every waiting request so vLLM's bookkeeping stays right.
//! `VllmHooks` sets and clears the step's admissions from Rust, so no Python runs for them; vLLM
//! calls the rest (its `RequestQueue` interface, duck-typed).

use pyo3::exceptions::PyIndexError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PySet};

#[pyclass(module = "autellix_core")]
pub struct AdmissionQueue {
    /// Waiting requests by request id in two insertion-ordered dicts, so every operation is O(1)
    /// however many wait: vLLM's prepends (preempted or skipped requests, newest last) and
    /// arrivals. Used only for counting and iteration; admission follows `admit`.
    front: Py<PyDict>,
    arrived: Py<PyDict>,
    /// This step's admissions, most urgent last (popped from the end).
    admit: Vec<Py<PyAny>>,
}

fn request_id<'py>(request: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    request.getattr(intern!(request.py(), "request_id"))
}

impl AdmissionQueue {
    /// The requests vLLM may admit this step, most urgent first; those no longer waiting here
    /// are dropped.
    pub(crate) fn set(&mut self, py: Python<'_>, requests: Vec<Py<PyAny>>) -> PyResult<()> {
        self.admit.clear();
        for request in requests.into_iter().rev() {
            if self.contains(&request_id(request.bind(py))?)? {
                self.admit.push(request);
            }
        }
        Ok(())
    }

    /// End of the step: forget admissions vLLM did not take. (The hooks hand back to the core
    /// from the requests' states: a request vLLM skipped was popped and prepended again, so what
    /// is left here is not all vLLM did not start.)
    pub(crate) fn clear(&mut self) {
        self.admit.clear();
    }

    fn contains(&self, request_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = request_id.py();
        Ok(self.front.bind(py).contains(request_id)? || self.arrived.bind(py).contains(request_id)?)
    }

    fn forget(&self, request_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = request_id.py();
        let front = self.front.bind(py);
        if front.contains(request_id)? {
            front.del_item(request_id)
        } else {
            let arrived = self.arrived.bind(py);
            if arrived.contains(request_id)? {
                arrived.del_item(request_id)?;
            }
            Ok(())
        }
    }
}

#[pymethods]
impl AdmissionQueue {
    #[new]
    fn new(py: Python<'_>) -> Self {
        AdmissionQueue { front: PyDict::new(py).unbind(), arrived: PyDict::new(py).unbind(), admit: Vec::new() }
    }

    /// See `set` (for tests; the hooks set admissions themselves).
    fn set_admissions(&mut self, py: Python<'_>, requests: Vec<Py<PyAny>>) -> PyResult<()> {
        self.set(py, requests)
    }

    fn clear_admissions(&mut self) {
        self.clear()
    }

    fn __contains__(&self, request_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(request_id)
    }

    // vLLM's RequestQueue interface

    fn add_request(&self, request: &Bound<'_, PyAny>) -> PyResult<()> {
        self.arrived.bind(request.py()).set_item(request_id(request)?, request)
    }

    fn pop_request(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let request = self.admit.pop().ok_or_else(|| PyIndexError::new_err("no request admitted this step"))?;
        self.forget(&request_id(request.bind(py))?)?;
        Ok(request)
    }

    fn peek_request(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let request = self.admit.last().ok_or_else(|| PyIndexError::new_err("no request admitted this step"))?;
        Ok(request.clone_ref(py))
    }

    fn prepend_request(&self, request: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = request_id(request)?;
        self.forget(&id)?;
        self.front.bind(request.py()).set_item(id, request)
    }

    /// The first ends up frontmost.
    fn prepend_requests(&self, requests: &Bound<'_, PyAny>) -> PyResult<()> {
        let requests: Vec<Bound<'_, PyAny>> = requests.try_iter()?.collect::<PyResult<_>>()?;
        for request in requests.iter().rev() {
            self.prepend_request(request)?;
        }
        Ok(())
    }

    fn remove_request(&mut self, request: &Bound<'_, PyAny>) -> PyResult<()> {
        self.remove_requests(PyList::new(request.py(), [request])?.as_any())
    }

    fn remove_requests(&mut self, requests: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = requests.py();
        let gone = PySet::empty(py)?;
        for request in requests.try_iter()? {
            let id = request_id(&request?)?;
            self.forget(&id)?;
            gone.add(id)?;
        }
        if !self.admit.is_empty() {
            let mut kept = Vec::with_capacity(self.admit.len());
            for request in self.admit.drain(..) {
                if !gone.contains(request_id(request.bind(py))?)? {
                    kept.push(request);
                }
            }
            self.admit = kept;
        }
        Ok(())
    }

    fn __bool__(&self) -> bool {
        !self.admit.is_empty()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.front.bind(py).len() + self.arrived.bind(py).len()
    }

    /// Every waiting request: prepends frontmost first, then arrivals in order.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        let all = PyList::empty(py);
        let front = self.front.bind(py).values();
        front.reverse()?;
        for request in front.iter().chain(self.arrived.bind(py).values().iter()) {
            all.append(request)?;
        }
        PyIterator::from_object(&all)
    }
}

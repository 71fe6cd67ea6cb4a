//! `Ids`: a batch of ids from Python, read fast. A step hands the core its running batch (hundreds
//! of ids) every engine iteration, and the generic sequence extraction takes and drops a reference
//! per item through the iterator protocol. A list of plain ints is read in place instead.

use std::ops::Deref;

use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::{ffi, Borrowed};

/// Ids given as any sequence of ints (`Vec<u64>` as an argument type, faster for a list).
#[derive(Debug, Default)]
pub(crate) struct Ids(Vec<u64>);

impl Deref for Ids {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        &self.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Ids {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            if let Some(ids) = plain_ints(&list)? {
                return Ok(Ids(ids));
            }
        }
        Ok(Ids(obj.extract()?))
    }
}

/// The list's items if all are exactly `int` (None at the first that is not: the caller reads the
/// list the generic way, which accepts int subclasses and `__index__`). Negative or too large ints
/// raise OverflowError, as the generic way does.
fn plain_ints(list: &Bound<'_, PyList>) -> PyResult<Option<Vec<u64>>> {
    let py = list.py();
    let len = list.len();
    let mut ids = Vec::with_capacity(len);
    for i in 0..len {
        // SAFETY: the GIL is held (`py`) and `i` is in bounds of a list no Python code can change
        // during this loop: nothing here runs Python code (an exact int converts without calling
        // `__index__`). `PyList_GetItem` lends the item, which the list keeps alive meanwhile.
        let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t) };
        if item.is_null() {
            return Err(PyErr::fetch(py));
        }
        if unsafe { ffi::PyLong_CheckExact(item) } == 0 {
            return Ok(None);
        }
        let id = unsafe { ffi::PyLong_AsUnsignedLongLong(item) };
        if id == u64::MAX {
            if let Some(error) = PyErr::take(py) {
                return Err(error);
            }
        }
        ids.push(id);
    }
    Ok(Some(ids))
}

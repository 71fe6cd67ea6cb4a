//! Typed errors of the scheduling core. Every message says what went wrong and what to do.

use std::fmt;

use crate::{CallId, ProgramId};

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// The call id is not live: never added, already finished, or dropped with its program.
    UnknownCall(CallId),
    /// A live call already has this id (or the id appears twice in one batch).
    DuplicateCall(CallId),
    UnknownProgram(ProgramId),
    /// The call exists but is not in the state the operation needs.
    WrongState {
        call: CallId,
        expected: &'static str,
    },
    /// An ATLAS parent that is neither live nor a finished call of the same program.
    UnknownParent {
        call: CallId,
        parent: CallId,
        program: ProgramId,
    },
    InvalidConfig(String),
    InvalidArgument(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::UnknownCall(call) => write!(
                f,
                "unknown call {call}: it was never added, already finished, or its program ended; add it with add_call first"
            ),
            CoreError::DuplicateCall(call) => write!(
                f,
                "call {call} is already live (or listed twice): call ids must be unique until the call finishes"
            ),
            CoreError::UnknownProgram(program) => write!(
                f,
                "unknown program {program}: it was never started, already ended, or was dropped after staying idle longer than stale_after"
            ),
            CoreError::WrongState { call, expected } => {
                write!(f, "call {call} is not {expected}: only {expected} calls can take part in this operation")
            }
            CoreError::UnknownParent { call, parent, program } => write!(
                f,
                "parent {parent} of call {call} is not a call of program {program}: name only calls of the same program that were added earlier"
            ),
            CoreError::InvalidConfig(why) => write!(f, "invalid scheduler configuration: {why}"),
            CoreError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
        }
    }
}

impl std::error::Error for CoreError {}

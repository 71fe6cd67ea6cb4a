//! The Autellix scheduling core: a program table, PLAS/ATLAS priorities discretised into
//! multi-level queues with anti-starvation and priority preemption, and a load balancer that
//! keeps a program's long prefixes on one engine, the adapter that maps an engine's request ids
//! onto them, and the guard that skips preemptions whose recompute costs more than they gain. Pure Rust; the Python module `autellix_core`
//! wraps it (rust/python).

pub mod balancer;
pub mod call_table;
pub mod config;
pub mod engine_adapter;
pub mod error;
pub mod preemption_guard;
pub mod program_table;
pub mod queues;
mod running_batch;
pub mod scheduler;

/// Call ids are chosen by the caller and unique while the call is live.
pub type CallId = u64;
pub type ProgramId = u64;

pub use balancer::{BalancerPolicy, LoadBalancer, DEFAULT_SHORT_CALL_TOKENS};
pub use config::{Policy, SchedulerConfig};
pub use engine_adapter::{AdapterConfig, AdapterStats, Arrival, EngineAdapter, EngineDecision};
pub use error::{CoreError, CoreResult};
pub use preemption_guard::PreemptionGuard;
pub use program_table::Program;
pub use scheduler::{Call, CallState, Decision, NewCall, Scheduler, Stats, StepInput};

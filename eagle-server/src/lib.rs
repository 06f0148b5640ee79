//! EagleDB's Redis-protocol server: settings (`config`), CPU pinning (`affinity`), commands (`cmd`), shared server state
//! (`state`), snapshots (`save`), the network loop (`net`), Prometheus metrics (`metrics`) and
//! command latency histograms (`latency`) and the clock that times commands (`stopwatch`), the
//! startup banner (`banner`) and a Redis-style logger (`logger`).

pub mod affinity;
pub mod banner;
pub mod cmd;
pub mod config;
pub mod latency;
pub mod logger;
pub mod metrics;
pub mod net;
pub mod save;
pub mod state;
pub mod stopwatch;

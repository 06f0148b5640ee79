//! EagleDB's Redis-protocol server: settings (`config`), commands (`cmd`), shared server state
//! (`state`), Prometheus metrics (`metrics`) and a Redis-style logger (`logger`).

pub mod cmd;
pub mod config;
pub mod logger;
pub mod metrics;
pub mod state;

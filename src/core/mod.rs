//! The pure core: no I/O, no clocks, no Kubernetes client. Everything the
//! webhook, `render` and the sync loop decide is decided here.

pub mod defaults;
pub mod desired;
pub mod merge;
pub mod model;
pub mod mutate;
pub mod quantity;

//! The pure core: no I/O, no clocks, no Kubernetes client. Everything the
//! webhook, `render` and the sync loop decide is decided here.

pub mod bounds;
pub mod defaults;
pub mod desired;
pub mod merge;
pub mod model;
pub mod mutate;
pub mod names;
pub mod patch;
pub mod placeholder;
pub mod plan;
pub mod quantity;

//! What the host offers: the accelerator choice and `pvio host-check`.

pub mod accel;
pub mod check;

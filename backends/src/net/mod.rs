//! The PV NIC: a virtio-net device served over vhost-user, moving frames
//! between the guest's split rings and a host tap device.
//!
//! | file | role |
//! | --- | --- |
//! | `tap.rs` | open or create the tap, offloads, header length, MTU, link up |
//! | `sys.rs` | the raw ioctls and vectored reads / writes behind the tap |
//! | `offload.rs` | features offered, guest features to `TUNSETOFFLOAD`, frame limits |

pub mod offload;
mod sys;
pub mod tap;

pub use tap::{Tap, TapError, TapQueue};

//! `pvio-dma-selftest BDF`: proves DMA through VFIO and the IOMMU on QEMU's
//! `edu` device, already bound to vfio-pci (`pvio pci-assignable-add BDF`).
//! A debugging and test tool: the guest tests copy it in beside `pvio`.

use std::process::ExitCode;

use pvio_passthrough::{edu, Bdf, Host};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bdf] = args.as_slice() else {
        eprintln!("usage: pvio-dma-selftest BDF   (an edu device bound to vfio-pci)");
        return ExitCode::from(2);
    };
    let bdf: Bdf = match bdf.parse() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pvio-dma-selftest: {e}");
            return ExitCode::from(2);
        }
    };
    match edu::dma_selftest(&Host::real(), bdf) {
        Ok(r) => {
            println!(
                "DMA OK: {} bytes to and from {} through IOMMU group {} at I/O address {:#x}",
                r.bytes, r.bdf, r.group, r.iova
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut line = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                line.push_str(": ");
                line.push_str(&s.to_string());
                src = s.source();
            }
            eprintln!("pvio-dma-selftest: {line}");
            ExitCode::FAILURE
        }
    }
}

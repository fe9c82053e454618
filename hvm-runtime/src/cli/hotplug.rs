//! The commands that change a running domain: `block-attach`,
//! `block-detach`, `block-list`, `cd-insert`, `cd-eject`,
//! `network-attach`, `network-detach`, `network-list`. Input is checked
//! here first (a bad spec never reaches the supervisor); the change itself
//! is made by the domain's supervisor.

use std::process::ExitCode;

use super::args::{
    BlockAttachArgs, CdInsertArgs, DomainArg, NetworkAttachArgs, NetworkDetachArgs, VdevArgs,
};
use super::domain::{DomainCliError, Result};
use crate::config::diag::escape_controls;
use crate::config::{disk, vif};
use crate::domain::control::Request;
use crate::domain::hotplug::HotplugError;
use crate::domain::record::{DiskEntry, NicEntry};
use crate::domain::{lifecycle, RunRoot};
use crate::host::media::{unusable, Wanted};

fn ask(name: &str, req: &Request) -> Result<serde_json::Value> {
    Ok(lifecycle::request(&RunRoot::from_env(), name, req)?)
}

fn cwd() -> Result<std::path::PathBuf> {
    std::env::current_dir().map_err(|source| {
        DomainCliError::Domain(crate::domain::DomainError::Io {
            what: "read the working directory",
            path: ".".into(),
            source,
        })
    })
}

/// `pvio block-attach NAME DISKSPEC`.
pub fn block_attach(a: &BlockAttachArgs) -> Result<ExitCode> {
    let spec = a.spec();
    let parsed = disk::parse(&spec).map_err(|message| HotplugError::BadSpec {
        spec: escape_controls(&spec).into_owned(),
        message: escape_controls(&message).into_owned(),
    })?;
    let v = ask(
        &a.name,
        &Request::BlockAttach {
            spec: spec.clone(),
            cwd: cwd()?,
        },
    )?;
    let shown = serde_json::from_value::<DiskEntry>(v)
        .ok()
        .and_then(|d| d.image)
        .map_or_else(String::new, |p| format!(" ({})", p.display()));
    println!("{}: {} attached{shown}", a.name, parsed.disk.vdev);
    Ok(ExitCode::SUCCESS)
}

/// `pvio block-detach NAME VDEV`.
pub fn block_detach(a: &VdevArgs) -> Result<ExitCode> {
    ask(
        &a.name,
        &Request::BlockDetach {
            vdev: a.vdev.clone(),
        },
    )?;
    println!("{}: {} detached", a.name, a.vdev);
    Ok(ExitCode::SUCCESS)
}

/// `pvio block-list NAME`.
pub fn block_list(a: &DomainArg) -> Result<ExitCode> {
    let v = ask(&a.name, &Request::BlockList)?;
    let disks: Vec<DiskEntry> = serde_json::from_value(v).map_err(DomainCliError::Output)?;
    println!(
        "{:<6}  {:<5}  {:<6}  {:<3}  Image",
        "Vdev", "Bus", "Type", "RW"
    );
    for d in disks {
        println!(
            "{:<6}  {:<5}  {:<6}  {:<3}  {}{}",
            d.vdev,
            d.bus,
            if d.cdrom { "cdrom" } else { "disk" },
            if d.read_only { "r" } else { "w" },
            d.image
                .map_or_else(|| "(empty)".to_owned(), |p| p.display().to_string()),
            if d.hotplugged { "  [hot-plugged]" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio cd-insert NAME VDEV PATH`.
pub fn cd_insert(a: &CdInsertArgs) -> Result<ExitCode> {
    let path = cwd()?.join(&a.path);
    if let Some(what) = unusable(&path, Wanted::ImageFile) {
        return Err(DomainCliError::NotAnImage { path, what });
    }
    ask(
        &a.name,
        &Request::CdInsert {
            vdev: a.vdev.clone(),
            path: path.clone(),
        },
    )?;
    println!("{}: {} now holds {}", a.name, a.vdev, path.display());
    Ok(ExitCode::SUCCESS)
}

/// `pvio cd-eject NAME VDEV`.
pub fn cd_eject(a: &VdevArgs) -> Result<ExitCode> {
    ask(
        &a.name,
        &Request::CdEject {
            vdev: a.vdev.clone(),
        },
    )?;
    println!("{}: {} ejected", a.name, a.vdev);
    Ok(ExitCode::SUCCESS)
}

/// `pvio network-attach NAME [key=value ...]`.
pub fn network_attach(a: &NetworkAttachArgs) -> Result<ExitCode> {
    let spec = a.settings.join(",");
    vif::parse(&spec, 0).map_err(|message| HotplugError::BadSpec {
        spec: escape_controls(&spec).into_owned(),
        message: escape_controls(&message).into_owned(),
    })?;
    let v = ask(
        &a.name,
        &Request::NetworkAttach {
            settings: a.settings.clone(),
        },
    )?;
    match serde_json::from_value::<NicEntry>(v) {
        Ok(n) => println!(
            "{}: NIC {} attached ({} {}, tap {} on {})",
            a.name, n.devid, n.model, n.mac, n.tap, n.bridge
        ),
        Err(_) => println!("{}: NIC attached", a.name),
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio network-detach NAME MAC|DEVID`.
pub fn network_detach(a: &NetworkDetachArgs) -> Result<ExitCode> {
    ask(&a.name, &Request::NetworkDetach { nic: a.nic.clone() })?;
    println!("{}: NIC {} detached", a.name, a.nic);
    Ok(ExitCode::SUCCESS)
}

/// `pvio network-list NAME`.
pub fn network_list(a: &DomainArg) -> Result<ExitCode> {
    let v = ask(&a.name, &Request::NetworkList)?;
    let nics: Vec<NicEntry> = serde_json::from_value(v).map_err(DomainCliError::Output)?;
    println!(
        "{:<5}  {:<17}  {:<14}  {:<15}  Bridge",
        "Devid", "MAC", "Model", "Tap"
    );
    for n in nics {
        println!(
            "{:<5}  {:<17}  {:<14}  {:<15}  {}{}",
            n.devid,
            n.mac,
            n.model,
            n.tap,
            n.bridge,
            if n.hotplugged { "  [hot-plugged]" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cd_insert_says_what_a_path_is_when_it_is_no_image() {
        let e = DomainCliError::NotAnImage {
            path: "/dev/zero".into(),
            what: unusable(std::path::Path::new("/dev/zero"), Wanted::ImageFile).unwrap(),
        };
        assert_eq!(
            e.to_string(),
            "/dev/zero is a character device, which has no medium to read; cd-insert takes an ISO image file"
        );
    }
}

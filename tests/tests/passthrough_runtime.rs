//! PCI passthrough with the runtime, on a machine with no host IOMMU: the
//! paths that need none, with the real `pvio` binary, a private run dir
//! (`PVIO_RUN_DIR`), a private ownership record (`PVIO_STATE_DIR`) and a
//! fixture host tree (`PVIO_HOST_ROOT`: sysfs, procfs and `/dev` laid out
//! as the kernel lays them out) standing for the host's PCI devices.
//!
//! - `assign --dry-run` into a running q35 domain prints the sysfs writes
//!   and the QMP `device_add` exactly as the hot-plug would send it (the
//!   agreed id, the spare root port it would use), and changes nothing;
//! - `assign` into a running domain whose hot-plug fails (QEMU cannot open
//!   the fixture's device: the host has no IOMMU) gives the device back to
//!   its driver; a small stand-in for the kernel moves the fixture device
//!   between drivers as sysfs writes ask;
//! - `assign` to a domain that is not running reserves the device, and
//!   `pvio create` of that domain refuses cleanly when the host has no
//!   IOMMU: no QEMU, the reservation kept (as `docs/passthrough.md` says);
//!   a name that cannot name a domain is refused;
//! - a config naming a missing device fails `create` with its line;
//! - on a host without an IOMMU the dry runs of `pci-assignable-add`,
//!   `assign` and `create` show their plan, then every blocker, exit 1.
//!
//! Needs the kit's guest kernel and QEMU (`.ci/run`), and
//! `cargo build --workspace --bins` first.

mod runtime_support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pvio_tests::pvio_bin;
use runtime_support::Env;

const NIC: &str = "0000:00:05.0";

/// A fixture host: one e1000 NIC at [`NIC`] in IOMMU group 7, vfio-pci
/// loaded, nothing mounted, no routes.
struct FixtureHost {
    root: PathBuf,
}

impl FixtureHost {
    fn new(env: &Env) -> FixtureHost {
        let root = env.path("host");
        for d in [
            "sys/bus/pci/devices",
            "sys/devices/pci0000:00",
            "sys/kernel/iommu_groups/7/devices",
            "sys/dev/block",
            "sys/class/block",
            "sys/class/net",
            "proc/self",
            "proc/net",
            "dev/vfio",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let h = FixtureHost { root };
        h.write("sys/bus/pci/drivers_probe", "");
        h.write("proc/self/mountinfo", "");
        h.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        h.write(
            "proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        for driver in ["e1000", "vfio-pci"] {
            h.write(&format!("sys/bus/pci/drivers/{driver}/bind"), "");
            h.write(&format!("sys/bus/pci/drivers/{driver}/unbind"), "");
        }
        let dev = h.device_dir();
        for (file, text) in [
            ("vendor", "0x8086\n"),
            ("device", "0x100e\n"),
            ("class", "0x020000\n"),
            ("subsystem_vendor", "0x0000\n"),
            ("subsystem_device", "0x0000\n"),
            ("driver_override", "(null)\n"),
        ] {
            std::fs::write(dev.join(file), text).unwrap();
        }
        symlink(&dev, h.root.join("sys/bus/pci/devices").join(NIC)).unwrap();
        let group = h.root.join("sys/kernel/iommu_groups/7");
        symlink(&group, dev.join("iommu_group")).unwrap();
        symlink(&dev, group.join("devices").join(NIC)).unwrap();
        h.bind("e1000");
        h
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn device_dir(&self) -> PathBuf {
        let d = self.root.join("sys/devices/pci0000:00").join(NIC);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn driver_link(&self) -> PathBuf {
        self.device_dir().join("driver")
    }

    /// Binds the NIC to `driver`, as the kernel shows it.
    fn bind(&self, driver: &str) {
        let _ = std::fs::remove_file(self.driver_link());
        symlink(
            self.root.join("sys/bus/pci/drivers").join(driver),
            self.driver_link(),
        )
        .unwrap();
    }

    /// The NIC's driver, from its link.
    fn driver(&self) -> String {
        let target = std::fs::read_link(self.driver_link()).unwrap();
        target.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The NIC already on vfio-pci, with its `/dev/vfio/7`.
    fn on_vfio_pci(&self) {
        self.bind("vfio-pci");
        self.write(
            &format!("sys/devices/pci0000:00/{NIC}/driver_override"),
            "vfio-pci\n",
        );
        self.write("dev/vfio/7", "");
    }

    /// Starts a stand-in for the kernel's side of the NIC's sysfs files,
    /// until dropped.
    fn start_kernel(&self) -> FakeKernel {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let host = FixtureHost {
            root: self.root.clone(),
        };
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                host.kernel_step();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        FakeKernel {
            stop,
            thread: Some(thread),
        }
    }

    /// Takes a request (the NIC's address) written to `rel`, clearing it.
    fn take_request(&self, rel: &str) -> bool {
        let p = self.root.join(rel);
        let asked = std::fs::read_to_string(&p).unwrap_or_default().trim() == NIC;
        if asked {
            std::fs::write(&p, "").unwrap();
        }
        asked
    }

    /// One look at the request files: a driver's `unbind` unbinds the NIC,
    /// its `bind` binds it, `drivers_probe` binds the driver of its
    /// `driver_override` (and vfio-pci makes `/dev/vfio/7`).
    fn kernel_step(&self) {
        for driver in ["e1000", "vfio-pci"] {
            if self.take_request(&format!("sys/bus/pci/drivers/{driver}/unbind")) {
                let _ = std::fs::remove_file(self.driver_link());
            }
            if self.take_request(&format!("sys/bus/pci/drivers/{driver}/bind")) {
                self.bind(driver);
            }
        }
        if self.take_request("sys/bus/pci/drivers_probe") {
            let over = std::fs::read_to_string(self.device_dir().join("driver_override"))
                .unwrap_or_default();
            let over = over.trim();
            if ["e1000", "vfio-pci"].contains(&over) && !self.driver_link().exists() {
                self.bind(over);
                if over == "vfio-pci" {
                    self.write("dev/vfio/7", "");
                }
            }
        }
    }

    /// The host as if booted without its IOMMU.
    fn iommu_off(&self) {
        let groups = self.root.join("sys/kernel/iommu_groups");
        std::fs::remove_dir_all(&groups).unwrap();
        std::fs::create_dir(&groups).unwrap();
    }
}

/// The fake kernel's thread, stopped when dropped.
struct FakeKernel {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `pvio ARGS` with the run dir, the record in `state` and the fixture
/// host.
fn pvio(env: &Env, host: &FixtureHost, args: &[&str]) -> Output {
    let out = Command::new(pvio_bin())
        .args(args)
        .env("PVIO_RUN_DIR", &env.run_dir)
        .env("PVIO_STATE_DIR", env.path("state"))
        .env("PVIO_HOST_ROOT", &host.root)
        .output()
        .expect("run pvio");
    eprintln!(
        "$ pvio {}\n{}{}[exit {}]",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ownership record's text (empty when there is none).
fn record_text(env: &Env) -> String {
    std::fs::read_to_string(env.path("state").join("passthrough.json")).unwrap_or_default()
}

fn cfg_path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn assign_dry_run_into_a_running_domain_prints_writes_and_device_add() {
    let env = Env::new();
    let host = FixtureHost::new(&env);
    let initramfs = env.initramfs("echo GUEST-READY\nsleep 600\n");
    let cfg = env.config("ptrun", &initramfs, "machine = 'q35'");
    env.ok(&["create", cfg_path(&cfg)]);
    env.wait_console("ptrun", "GUEST-READY", Duration::from_secs(120));

    let out = pvio(&env, &host, &["assign", "--dry-run", NIC, "ptrun"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let sys = host.root.join("sys");
    let expected = [
        format!(
            "write 'vfio-pci' > {}/bus/pci/devices/{NIC}/driver_override",
            sys.display()
        ),
        format!(
            "write '{NIC}' > {}/bus/pci/drivers/e1000/unbind",
            sys.display()
        ),
        format!("write '{NIC}' > {}/bus/pci/drivers_probe", sys.display()),
        // As the hot-plug sends it: behind the first free spare root port.
        format!(
            r#"qmp {{"execute":"device_add","arguments":{{"bus":"pvio-rp0","id":"pt-0000-00-05.0","driver":"vfio-pci","host":"{NIC}"}}}}"#
        ),
        "(dry run: nothing was changed)".to_owned(),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected, "{text}");

    // Nothing changed: not the device, not the record, not the domain.
    assert_eq!(host.driver(), "e1000");
    assert_eq!(
        std::fs::read_to_string(host.device_dir().join("driver_override")).unwrap(),
        "(null)\n"
    );
    assert!(!record_text(&env).contains(NIC), "{}", record_text(&env));
    assert!(env.record("ptrun").pci.is_empty());
    assert_eq!(env.record("ptrun").state.to_string(), "running");

    // A release of a device pvio never took is refused, naming its driver.
    let out = pvio(&env, &host, &["release", "--dry-run", NIC]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pvio has no record of"),
        "{}",
        stderr(&out)
    );

    env.ok(&["destroy", "ptrun"]);
}

#[test]
fn a_failed_hot_plug_gives_the_device_back_to_its_driver() {
    let env = Env::new();
    let host = FixtureHost::new(&env);
    let _kernel = host.start_kernel();
    let initramfs = env.initramfs("echo GUEST-READY\nsleep 600\n");
    let cfg = env.config("ptfail", &initramfs, "");
    env.ok(&["create", cfg_path(&cfg)]);
    env.wait_console("ptfail", "GUEST-READY", Duration::from_secs(120));

    // pvio takes the NIC from e1000 to vfio-pci (the fixture's kernel
    // does as asked), records it, and asks the supervisor to hot-plug it;
    // QEMU cannot open it (this host has no IOMMU behind the fixture).
    let out = pvio(&env, &host, &["assign", NIC, "ptfail"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot hot-plug {NIC} into `ptfail`; what this command took was given back"
        )),
        "{err}"
    );
    // Given back: on e1000 again, override cleared, no record, and the
    // domain has no such device and still runs.
    assert_eq!(host.driver(), "e1000");
    assert_eq!(
        std::fs::read_to_string(host.device_dir().join("driver_override")).unwrap(),
        "\n"
    );
    assert!(!record_text(&env).contains(NIC), "{}", record_text(&env));
    let rec = env.record("ptfail");
    assert!(rec.pci.is_empty());
    assert_eq!(rec.state.to_string(), "running");
    env.ok(&["destroy", "ptfail"]);
}

#[test]
fn assign_to_a_stopped_domain_reserves_and_create_refuses_without_an_iommu() {
    let env = Env::new();
    let host = FixtureHost::new(&env);
    host.on_vfio_pci();
    let initramfs = env.path("no-initramfs.cpio");
    std::fs::write(&initramfs, b"").unwrap();
    let cfg = env.config("ptres", &initramfs, "");

    // The domain is not running: the device is reserved for it.
    let out = pvio(&env, &host, &["assign", "--dry-run", NIC, "ptres"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "qemu -device vfio-pci,host={NIC},id=pt-0000-00-05.0 (not run now: `ptres` is not \
             running; the device would be reserved for it and added at `ptres`'s next `pvio \
             create`)\n(dry run: nothing was changed)\n"
        )
    );
    assert!(!record_text(&env).contains(NIC));

    // A name that cannot name a domain is not a reservation.
    let out = pvio(&env, &host, &["assign", NIC, "pt/res"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'pt/res' cannot name a domain"),
        "{}",
        stderr(&out)
    );
    assert!(!record_text(&env).contains(NIC));

    let out = pvio(&env, &host, &["assign", NIC, "ptres"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("{NIC} is reserved for `ptres`; it is added at `ptres`'s next `pvio create`")
    );
    let list = stdout(&pvio(&env, &host, &["pci-assignable-list"]));
    assert!(list.contains(&format!("{NIC}  owner `ptres`")), "{list}");

    // The host lost its IOMMU (booted without intel_iommu=on): create
    // refuses before QEMU starts, with the reason and what to do.
    host.iommu_off();
    let out = pvio(&env, &host, &["create", cfg_path(&cfg)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("domain 'ptres' did not start"), "{err}");
    assert!(
        err.contains(&format!(
            "{NIC} is reserved for `ptres` by `pvio assign` but cannot be given to it"
        )),
        "{err}"
    );
    assert!(err.contains("IOMMU"), "{err}");
    assert!(err.contains("the reservation is kept"), "{err}");
    let rec = env.record("ptres");
    assert_eq!(rec.state.to_string(), "ended");
    assert_eq!(rec.qemu_pid, None, "QEMU was never started");
    assert!(rec.pci.is_empty());
    assert!(!env.ok(&["list"]).contains("ptres"));

    // The reservation stays, and the device was not touched.
    let list = stdout(&pvio(&env, &host, &["pci-assignable-list"]));
    assert!(list.contains(&format!("{NIC}  owner `ptres`")), "{list}");
    assert_eq!(host.driver(), "vfio-pci");

    // Releasing it: nothing to hot-unplug (its owner does not run), then
    // the device goes back (it had no driver before pvio took it).
    let out = pvio(&env, &host, &["release", "--dry-run", NIC]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("(`ptres` is not running: nothing to hot-unplug)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "write '{NIC}' > {}/sys/bus/pci/drivers/vfio-pci/unbind",
            host.root.display()
        )),
        "{text}"
    );
    let list = stdout(&pvio(&env, &host, &["pci-assignable-list"]));
    assert!(list.contains(&format!("{NIC}  owner `ptres`")), "{list}");
    assert_eq!(host.driver(), "vfio-pci");
}

#[test]
fn a_missing_pci_device_fails_create_naming_the_line() {
    let env = Env::new();
    let host = FixtureHost::new(&env);
    let initramfs = env.path("no-initramfs.cpio");
    std::fs::write(&initramfs, b"").unwrap();
    let cfg = env.config("ptmiss", &initramfs, "pci = ['0000:ff:1f.7']");
    for out in [
        env.pvio(&["create", cfg_path(&cfg)]),
        pvio(&env, &host, &["create", cfg_path(&cfg)]),
    ] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("ptmiss.cfg:8: key 'pci': the host has no PCI device 0000:ff:1f.7"),
            "{err}"
        );
        assert!(err.contains("`pvio pci-list` shows what it has"), "{err}");
    }
    assert!(!env.run_dir.join("ptmiss").exists());
    assert!(record_text(&env).is_empty());
}

/// On a host without an IOMMU the dry runs show their whole plan (the
/// sysfs writes, the device QEMU would get) and then every reason the
/// real run would refuse, and exit 1; `create --dry-run` of a config
/// naming the device lists the same reasons as problems of its line.
#[test]
fn dry_runs_without_an_iommu_show_the_plan_then_every_blocker() {
    let env = Env::new();
    let host = FixtureHost::new(&env);
    host.iommu_off();
    std::fs::remove_file(host.device_dir().join("iommu_group")).unwrap();
    let sys = host.root.display();

    let out = pvio(&env, &host, &["pci-assignable-add", "--dry-run", NIC]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        format!(
            "write 'vfio-pci' > {sys}/sys/bus/pci/devices/{NIC}/driver_override\n\
             write '{NIC}' > {sys}/sys/bus/pci/drivers/e1000/unbind\n\
             write '{NIC}' > {sys}/sys/bus/pci/drivers_probe\n\
             (dry run: nothing was changed)\n"
        )
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("pvio: blocker: the IOMMU is off (/sys/kernel/iommu_groups is empty)"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "pvio: the dry run found 1 blocker (above): `pvio pci-assignable-add` would refuse \
             {NIC} and change nothing\n"
        )),
        "{err}"
    );

    let out = pvio(&env, &host, &["assign", "--dry-run", NIC, "ptdry"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("/sys/bus/pci/drivers/e1000/unbind"), "{text}");
    assert!(
        text.contains(&format!(
            "qemu -device vfio-pci,host={NIC},id=pt-0000-00-05.0 (not run now: `ptdry` is not running"
        )),
        "{text}"
    );
    let err = stderr(&out);
    assert!(err.contains("pvio: blocker: the IOMMU is off"), "{err}");
    assert!(err.contains("`pvio assign` would refuse"), "{err}");
    assert_eq!(host.driver(), "e1000");
    assert!(record_text(&env).is_empty());

    let initramfs = env.path("no-initramfs.cpio");
    std::fs::write(&initramfs, b"").unwrap();
    let cfg = env.config("ptdry", &initramfs, &format!("pci = ['{NIC}']"));
    let out = pvio(&env, &host, &["create", "--dry-run", cfg_path(&cfg)]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("-device vfio-pci,host=0000:00:05.0"), "{all}");
    assert!(
        all.contains(&format!(
            "ptdry.cfg:8: key 'pci': {NIC} is on e1000, a host driver; add seize=1"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!("ptdry.cfg:8: key 'pci': {NIC}: the IOMMU is off")),
        "{all}"
    );
    assert!(!env.run_dir.join("ptdry").exists());
    assert!(record_text(&env).is_empty());
}

//! `monitor=1` puts QEMU's human monitor on the display too, as the Xen
//! HVM guide uses it: in a VNC viewer, Ctrl-Alt-2 shows the monitor and
//! Ctrl-Alt-1 the guest again. The test checks that the `vc` chardev
//! exists (`pvio qmp NAME query-chardev`), then speaks VNC (RFB 3.8, no
//! password on loopback) to the domain's display as a viewer would: it
//! presses Ctrl-Alt-2 and types a monitor command there, and the command's
//! effect (a new chardev) shows in `query-chardev`.

mod runtime_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use runtime_support::Env;

const T: Duration = Duration::from_secs(120);

const CTRL_L: u32 = 0xffe3;
const ALT_L: u32 = 0xffe9;
const RETURN: u32 = 0xff0d;

fn qmp(env: &Env, name: &str, cmd: &str) -> serde_json::Value {
    let text = env.ok(&["qmp", name, cmd]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn chardev_labels(env: &Env, name: &str) -> Vec<(String, String)> {
    let v = qmp(env, name, r#"{"execute":"query-chardev"}"#);
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap_or_default().to_owned(),
                c["filename"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A VNC client that does the handshake and sends key events.
struct Viewer(TcpStream);

impl Viewer {
    fn connect(addr: &str) -> Viewer {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut version = [0u8; 12];
        s.read_exact(&mut version).unwrap();
        assert!(version.starts_with(b"RFB 003."), "{version:?}");
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut n = [0u8; 1];
        s.read_exact(&mut n).unwrap();
        let mut types = vec![0u8; usize::from(n[0])];
        s.read_exact(&mut types).unwrap();
        assert!(types.contains(&1), "security types {types:?}: no 'None'");
        s.write_all(&[1]).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).unwrap();
        assert_eq!(u32::from_be_bytes(result), 0, "VNC security refused");
        s.write_all(&[1]).unwrap(); // ClientInit: shared
        let mut init = [0u8; 24];
        s.read_exact(&mut init).unwrap();
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        let mut name = vec![0u8; usize::try_from(len).unwrap()];
        s.read_exact(&mut name).unwrap();
        Viewer(s)
    }

    fn key(&mut self, keysym: u32, down: bool) {
        let mut msg = vec![4u8, u8::from(down), 0, 0];
        msg.extend_from_slice(&keysym.to_be_bytes());
        self.0.write_all(&msg).unwrap();
    }

    fn press(&mut self, keysym: u32) {
        self.key(keysym, true);
        self.key(keysym, false);
    }

    /// Ctrl-Alt-N: the display's console N.
    fn console(&mut self, n: u8) {
        self.key(CTRL_L, true);
        self.key(ALT_L, true);
        self.press(u32::from(b'0' + n));
        self.key(ALT_L, false);
        self.key(CTRL_L, false);
    }

    fn type_line(&mut self, text: &str) {
        for c in text.bytes() {
            self.press(u32::from(c));
        }
        self.press(RETURN);
    }
}

#[test]
fn the_monitor_is_on_the_vnc_display_behind_ctrl_alt_2() {
    let env = Env::new();
    let initramfs = env.initramfs("echo GUEST-UP\nsleep 600\n");
    let cfg = env.config(
        "monvc",
        &initramfs,
        "vnc = 1\nvncunused = 1\nmonitor = 1\non_poweroff = 'destroy'",
    );
    let out = env.pvio(&["create", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("and on the display (Ctrl-Alt-2; Ctrl-Alt-1 back to the guest)"),
        "the monitor's warning: {err}"
    );
    env.wait_console("monvc", "GUEST-UP", T);

    let chardevs = chardev_labels(&env, "monvc");
    assert!(
        chardevs
            .iter()
            .any(|(label, file)| label == "pvio-monitor-vc" && file == "vc"),
        "{chardevs:?}"
    );

    let vnc = qmp(&env, "monvc", r#"{"execute":"query-vnc"}"#);
    let addr = format!(
        "{}:{}",
        vnc["host"].as_str().unwrap(),
        vnc["service"].as_str().unwrap()
    );
    let mut viewer = Viewer::connect(&addr);
    viewer.console(2);
    viewer.type_line("chardev-add null,id=typedonvc");
    let start = Instant::now();
    loop {
        let chardevs = chardev_labels(&env, "monvc");
        if chardevs.iter().any(|(label, _)| label == "typedonvc") {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the command typed on console 2 never reached the monitor: {chardevs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl-Alt-1: back to the guest's display; the guest runs on.
    viewer.console(1);
    let status = qmp(&env, "monvc", r#"{"execute":"query-status"}"#);
    assert_eq!(status["running"], true, "{status}");
    env.ok(&["destroy", "monvc"]);
}

//! pvio's QMP layer (`pvio_hvm_runtime::qmp`, over the `qapi` crate)
//! against a real QEMU: connect while QEMU starts, typed commands, a
//! refusal with QEMU's message, and the events of a `quit` on a listening
//! connection.

use std::process::{Command, Stdio};
use std::time::Duration;

use pvio_hvm_runtime::qmp::{qmp, EventReader, Qmp, QmpError, Received};

#[test]
fn qmp_commands_and_events_against_real_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let cmd_sock = dir.path().join("qmp.sock");
    let ev_sock = dir.path().join("qmp-events.sock");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-S"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", cmd_sock.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", ev_sock.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 must be installed (scripts/setup.sh)");

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut q = Qmp::connect(&cmd_sock, Duration::from_secs(20)).unwrap();
        let mut events =
            EventReader::connect_while(&ev_sock, Duration::from_secs(20), || true).unwrap();
        let st = q.status().unwrap();
        assert!(!st.running);
        assert_eq!(st.status, qmp::RunState::prelaunch);
        q.execute(&qmp::cont {}).unwrap();
        assert!(q.status().unwrap().running);
        q.execute(&qmp::stop {}).unwrap();
        assert_eq!(q.status().unwrap().status, qmp::RunState::paused);

        let err = q
            .execute(&qmp::device_del { id: "nope".into() })
            .unwrap_err();
        assert!(matches!(err, QmpError::Refused { .. }), "{err:?}");
        let line = pvio_hvm_runtime::cli::error_line(&err);
        assert!(line.contains("nope"), "{line}");

        q.execute(&qmp::quit {}).unwrap();
        let mut saw_shutdown = false;
        loop {
            match events.next_event().unwrap() {
                Received::Event(e) => {
                    if let qmp::Event::SHUTDOWN { data, .. } = *e {
                        assert!(!data.guest);
                        assert_eq!(data.reason, qmp::ShutdownCause::host_qmp_quit);
                        saw_shutdown = true;
                    }
                }
                Received::Unknown(_) => {}
                Received::Closed => break,
            }
        }
        assert!(saw_shutdown);
    }));
    let _ = qemu.kill();
    let _ = qemu.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

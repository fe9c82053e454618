//! A test program for the backends' sandbox: it enters exactly the sandbox
//! of a role through `pvio_backends::sandbox::enter`, then makes either only
//! calls the allowlist has, or one it does not. Used by
//! `tests/tests/sandbox.rs`; not part of pvio.
//!
//! Usage: `pvio-sandbox-probe blk|net allowed|inet-socket|openat|execve`.
//! Exit 0: the calls were made; 2: bad usage; 3: the sandbox was not
//! entered; death by SIGSYS: the filter killed it.

use std::io::Write;
use std::process::ExitCode;

use pvio_backends::sandbox::{enter, Role, SandboxOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = match args.first().map(String::as_str) {
        Some("blk") => Role::Blk,
        Some("net") => Role::Net,
        _ => return usage(),
    };
    let Some(call) = args.get(1).cloned() else {
        return usage();
    };
    if let Err(e) = enter(role, &SandboxOptions::default()) {
        eprintln!("pvio-sandbox-probe: {e}");
        return ExitCode::from(3);
    }
    match call.as_str() {
        "allowed" => allowed(),
        "inet-socket" => {
            let r = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::DGRAM,
                None,
            );
            eprintln!("socket(AF_INET) returned {r:?}");
        }
        "openat" => {
            let r = std::fs::File::open("/etc/hostname");
            eprintln!("openat returned {r:?}");
        }
        "execve" => {
            let r = std::process::Command::new("/bin/true").status();
            eprintln!("execve returned {r:?}");
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}

/// What a backend does all the time: a thread, an eventfd, epoll, memory,
/// a socket pair, a write to stderr.
fn allowed() {
    let t = std::thread::spawn(|| {
        let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
        rustix::io::write(&efd, &1u64.to_ne_bytes()).expect("write eventfd");
        let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)
            .expect("epoll");
        drop(ep);
        let v: Vec<u8> = vec![7; 1 << 20];
        v.len()
    });
    let n = t.join().expect("thread");
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    (&a).write_all(b"x").expect("send");
    drop(b);
    let _ = writeln!(std::io::stderr(), "allowed calls made ({n})");
}

fn usage() -> ExitCode {
    eprintln!("usage: pvio-sandbox-probe blk|net allowed|inet-socket|openat|execve");
    ExitCode::from(2)
}

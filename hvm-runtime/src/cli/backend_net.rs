//! `pvio backend net`: from the parsed arguments to the PV net backend,
//! served in the foreground until SIGTERM or SIGINT.
//!
//! It must not know how the backend works: it maps options and reports.

use std::process::ExitCode;

use pvio_backends::inherit::{take_inherited, InheritError};
use pvio_backends::net::{parse_mac, serve_until_signal, NetError, NetOptions, TapSource};
use pvio_backends::vhost_user::Listen;

use super::args::NetBackendArgs;

/// The backend's options from the command line (the MAC is parsed here, so
/// a typo is reported before anything is opened). Inherited fds are taken
/// over here.
pub fn options(a: NetBackendArgs) -> Result<NetOptions, NetError> {
    let mac = a.mac.as_deref().map(parse_mac).transpose()?;
    // Every number at once, so that none is given twice.
    let numbers: Vec<i32> = a.listen_fd.iter().chain(&a.tap_fd).copied().collect();
    let mut fds = take_inherited(&numbers)?.into_iter();
    let neither = InheritError::Neither;
    let listen = match (a.socket, a.listen_fd) {
        (Some(path), _) => Listen::Path(path),
        (None, Some(_)) => Listen::Fd(fds.next().ok_or(neither("--socket or --listen-fd"))?),
        (None, None) => return Err(neither("--socket or --listen-fd").into()),
    };
    let tap_fds: Vec<_> = fds.collect();
    let tap = match a.tap {
        Some(name) => TapSource::Name(name),
        None if !tap_fds.is_empty() => TapSource::Fds(tap_fds),
        None => return Err(neither("--tap or --tap-fd").into()),
    };
    let mut opts = NetOptions::with(listen, tap);
    opts.queue_pairs = a.num_queue_pairs;
    opts.queue_size = a.queue_size;
    opts.mtu = a.mtu;
    opts.mac = mac;
    Ok(opts)
}

/// `pvio backend net`: opens (or creates) the tap or takes its queue fds,
/// enters the sandbox (unless `--no-sandbox`), serves the socket until
/// SIGTERM or SIGINT, then removes the socket it bound (and the tap if it
/// made it).
pub fn backend_net(a: NetBackendArgs) -> Result<ExitCode, NetError> {
    let sandbox = a.sandbox.options();
    serve_until_signal(&options(a)?, sandbox.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{try_parse_from, BackendCommand, Command};

    fn args(extra: &[&str]) -> NetBackendArgs {
        let mut argv = vec![
            "pvio",
            "backend",
            "net",
            "--socket",
            "/tmp/x.sock",
            "--tap",
            "pviot0",
        ];
        argv.extend_from_slice(extra);
        match try_parse_from(argv).unwrap().command {
            Command::Backend(BackendCommand::Net(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_follow_the_arguments() {
        let o = options(args(&[
            "--num-queue-pairs",
            "2",
            "--queue-size",
            "512",
            "--mac",
            "52:54:00:00:00:07",
            "--mtu",
            "9000",
        ]))
        .unwrap();
        assert!(matches!(&o.tap, TapSource::Name(n) if n == "pviot0"));
        assert_eq!(o.queue_pairs, 2);
        assert_eq!(o.queue_size, 512);
        assert_eq!(o.mac, Some([0x52, 0x54, 0, 0, 0, 7]));
        assert_eq!(o.mtu, Some(9000));
        let d = options(args(&[])).unwrap();
        assert_eq!(
            (d.queue_pairs, d.queue_size, d.mac, d.mtu),
            (1, 256, None, None)
        );
    }

    #[test]
    fn a_bad_mac_is_one_clear_line() {
        let err = options(args(&["--mac", "52:54:00"])).unwrap_err();
        assert!(err.to_string().contains("six hex bytes"), "{err}");
    }

    #[test]
    fn bad_options_fail_before_the_socket_exists() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("n.sock");
        let s = sock.to_str().unwrap();
        for (extra, want) in [
            (["--tap", "bad/name"], "invalid tap name"),
            (["--num-queue-pairs", "0"], "--num-queue-pairs"),
            (["--queue-size", "100"], "--queue-size"),
        ] {
            let tap = if extra[0] == "--tap" {
                extra[1]
            } else {
                "pviot0"
            };
            let mut argv = vec!["pvio", "backend", "net", "--socket", s, "--tap", tap];
            if extra[0] != "--tap" {
                argv.extend(extra);
            }
            let Command::Backend(BackendCommand::Net(a)) = try_parse_from(argv).unwrap().command
            else {
                unreachable!()
            };
            let err = backend_net(a).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert!(!sock.exists());
        }
    }
}

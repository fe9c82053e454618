//! An `sshd` of a test's own on 127.0.0.1 (a free port, a host key and a
//! client key it makes, the test's `pvio` and run dir in the session's
//! environment): "the other host" of a migration. Nothing else is
//! contacted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::Env;

/// An sshd of the test's own on 127.0.0.1, killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    key: PathBuf,
}

impl Sshd {
    pub fn start(env: &Env) -> Sshd {
        let dir = env.path("ssh");
        std::fs::create_dir_all(&dir).unwrap();
        let keygen = |path: &Path| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("ssh-keygen (openssh-client, scripts/setup.sh)");
            assert!(ok.success());
        };
        let host_key = dir.join("host_key");
        let key = dir.join("client_key");
        keygen(&host_key);
        keygen(&key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_key.pub"), &authorized).unwrap();
        // sshd's privilege separation needs its empty directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let pvio_dir = pvio_tests::pvio_bin().parent().unwrap().to_owned();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {}\n\
                 AuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PidFile none\n\
                 SetEnv PATH={}:/usr/sbin:/usr/bin:/sbin:/bin PVIO_RUN_DIR={}\n",
                host_key.display(),
                authorized.display(),
                pvio_dir.display(),
                env.run_dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .expect("sshd (openssh-server, scripts/setup.sh)");
        // Ready once it says it listens.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(err.read_line(&mut line).unwrap() > 0, "sshd exited: {seen}");
            seen.push_str(&line);
            if line.contains("Server listening on 127.0.0.1") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(l) = line else { return };
                eprintln!("sshd: {l}");
            }
        });
        Sshd { child, port, key }
    }

    /// The `--ssh` command that reaches it.
    pub fn command(&self) -> String {
        format!(
            "ssh -p {} -i {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.port,
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

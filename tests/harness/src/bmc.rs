//! BMC peers for the Redfish tests: the real sushy-emulator (PyPI sushy-tools 2.2.0, fake
//! driver, installed by `cargo xtask setup` into target/sushy-venv) and, for what sushy cannot
//! do, `tests/harness/mock_bmc.py`. Each runs inside a network namespace, on its loopback or a
//! bench address, and is killed on drop; certificates come from openssl.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{run, spawn_ready, unique, workspace, ChildGuard, NetNs};

/// User name the BMCs accept.
pub const USER: &str = "admin";
/// Password sushy accepts (bcrypt entry in its htpasswd file).
pub const SUSHY_PASSWORD: &str = "sushy-pw-42";
/// Password the mock BMC accepts.
pub const MOCK_PASSWORD: &str = "s3cret-pw";

/// The venv's bin directory (`$FAILOVER_SUSHY_VENV/bin`, default target/sushy-venv/bin).
pub fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("FAILOVER_SUSHY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target").join("sushy-venv"));
    let bin = venv.join("bin");
    assert!(
        bin.join("sushy-emulator").exists(),
        "{} has no sushy-emulator: run `cargo xtask setup`",
        bin.display()
    );
    bin
}

/// A CA, a leaf for 127.0.0.1 and the bench addresses signed by it, and an unrelated CA.
pub struct Certs {
    /// The CA that signed the leaf.
    pub ca: PathBuf,
    /// A CA that did not.
    pub other_ca: PathBuf,
    /// Leaf certificate.
    pub cert: PathBuf,
    /// Leaf key.
    pub key: PathBuf,
}

impl Certs {
    /// Generates the certificates into `dir`.
    pub fn new(dir: &Path) -> Certs {
        let p = |n: &str| dir.join(n);
        for name in ["ca", "other-ca"] {
            run(
                "openssl",
                [
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=failover test {name}"),
                    "-keyout",
                    p(&format!("{name}.key")).to_str().unwrap(),
                    "-out",
                    p(&format!("{name}.pem")).to_str().unwrap(),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        run(
            "openssl",
            [
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=bmc",
                "-keyout",
                p("leaf.key").to_str().unwrap(),
                "-out",
                p("leaf.csr").to_str().unwrap(),
            ],
        );
        std::fs::write(
            p("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,IP:10.91.0.250\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(
            "openssl",
            [
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                p("leaf.csr").to_str().unwrap(),
                "-CA",
                p("ca.pem").to_str().unwrap(),
                "-CAkey",
                p("ca.key").to_str().unwrap(),
                "-CAcreateserial",
                "-extfile",
                p("leaf.ext").to_str().unwrap(),
                "-out",
                p("leaf.pem").to_str().unwrap(),
            ],
        );
        Certs {
            ca: p("ca.pem"),
            other_ca: p("other-ca.pem"),
            cert: p("leaf.pem"),
            key: p("leaf.key"),
        }
    }
}

/// One fake system of sushy.
pub struct FakeSystem {
    /// Name.
    pub name: &'static str,
    /// UUID (also its Id).
    pub uuid: &'static str,
    /// Initial power state.
    pub power: &'static str,
}

/// A running BMC; killed on drop (after the namespace it may live in is still there).
pub struct Bmc {
    /// Base URL.
    pub url: String,
    /// Temporary directory (config, state, certificates, password file).
    pub dir: PathBuf,
    /// Certificates (for TLS BMCs).
    pub certs: Option<Certs>,
    /// A file holding the right password.
    pub password_file: PathBuf,
    child: Option<ChildGuard>,
}

impl Drop for Bmc {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bmc {
    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(unique("fo-bmc-"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Starts sushy-emulator in `ns` on `ip:8000`, over HTTPS (CA + leaf) with basic auth.
    pub fn sushy(ns: &NetNs, ip: &str, systems: &[FakeSystem]) -> Bmc {
        let dir = Bmc::dir();
        let bin = venv_bin();
        let certs = Certs::new(&dir);
        let hash = Command::new(bin.join("python"))
            .args([
                "-c",
                &format!(
                    "import bcrypt;print(bcrypt.hashpw(b'{SUSHY_PASSWORD}',bcrypt.gensalt(4)).decode())"
                ),
            ])
            .output()
            .expect("bcrypt");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        assert!(hash.starts_with("$2"), "bcrypt hash: {hash:?}");
        std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
        let systems_py: Vec<String> = systems
            .iter()
            .map(|s| {
                format!(
                    "{{'uuid': '{}', 'name': '{}', 'power_state': '{}', 'nics': []}}",
                    s.uuid, s.name, s.power
                )
            })
            .collect();
        let conf = format!(
            "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{state}'\n\
             SUSHY_EMULATOR_LISTEN_IP = '{ip}'\nSUSHY_EMULATOR_LISTEN_PORT = 8000\n\
             SUSHY_EMULATOR_SSL_CERT = '{cert}'\nSUSHY_EMULATOR_SSL_KEY = '{key}'\n\
             SUSHY_EMULATOR_AUTH_FILE = '{auth}'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n",
            state = dir.join("state").display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
            auth = dir.join("htpasswd").display(),
            systems = systems_py.join(", "),
        );
        std::fs::write(dir.join("sushy.conf"), conf).unwrap();
        let pw = dir.join("password");
        std::fs::write(&pw, format!("{SUSHY_PASSWORD}\n")).unwrap();
        let mut cmd = ns.command(bin.join("sushy-emulator"));
        cmd.arg("--config").arg(dir.join("sushy.conf"));
        let child = spawn_ready(cmd, "Running on");
        Bmc {
            url: format!("https://{ip}:8000"),
            dir,
            certs: Some(certs),
            password_file: pw,
            child: Some(child),
        }
    }

    /// Starts the mock BMC in `ns` on 127.0.0.1:8001 in `mode` (see mock_bmc.py), plain HTTP.
    pub fn mock(ns: &NetNs, mode: &str) -> Bmc {
        let dir = Bmc::dir();
        let pw = dir.join("password");
        std::fs::write(&pw, format!("{MOCK_PASSWORD}\n")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mock_bmc.py");
        let mut cmd = ns.command("/usr/bin/python3");
        cmd.arg(script).args([mode, "8001"]);
        cmd.stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mock_bmc.py");
        // The first stdout line is "ready" once it listens; the rest is its request log.
        let stdout = child.stdout.take().expect("piped");
        let log = dir.join("requests.log");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::{BufRead as _, Write as _};
            let mut f = std::fs::File::create(log).expect("request log");
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "ready" {
                    let _ = tx.send(());
                } else {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("mock BMC never became ready");
        Bmc {
            url: "http://127.0.0.1:8001".into(),
            dir,
            certs: None,
            password_file: pw,
            child: Some(ChildGuard(child)),
        }
    }

    /// The mock's request log ("METHOD PATH" lines).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

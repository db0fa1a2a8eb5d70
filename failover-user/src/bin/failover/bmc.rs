//! `failover bmc`: check a BMC, or reset a system by hand, without a configuration file.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Subcommand;
use failover::{
    fence::{
        redfish::{self, wait_power, Client, Endpoint, RedfishFence},
        PasswordSource,
    },
    role::BootAction,
};
use serde_json::json;

use crate::parse_duration;

#[derive(Subcommand, Debug)]
pub enum BmcCmd {
    /// Reach the BMC, authenticate, find the system and its allowed reset types, and print
    /// its power state. Changes nothing. Exit 0 when all of that worked, 2 otherwise.
    Check {
        #[command(flatten)]
        conn: BmcConn,
        /// Print one JSON object: system, power_state, reset_types, id, name, uuid, auth, ms.
        #[arg(long)]
        json: bool,
    },
    /// Reset the system with one reset type (On, ForceOff, ForceRestart, ...), or run one of
    /// the daemon's strategies exactly as a fence would (--strategy).
    Reset {
        #[command(flatten)]
        conn: BmcConn,
        /// The ResetType; it must be among the system's allowed values.
        #[arg(
            long = "type",
            required_unless_present = "strategy",
            conflicts_with = "strategy"
        )]
        reset_type: Option<String>,
        /// The daemon's strategy: off (the fence: first allowed of --types, default ForceOff,
        /// GracefulShutdown, PushPowerButton; then PowerState Off confirmed), on (On, ForceOn,
        /// PushPowerButton; then PowerState On) or restart (ForceRestart, GracefulRestart,
        /// PowerCycle). A type refused with 400 or 501 falls to the next.
        #[arg(long, value_parser = ["off", "on", "restart"])]
        strategy: Option<String>,
        /// With --strategy: the reset types to try, in order, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "strategy")]
        types: Vec<String>,
        /// Then wait until PowerState shows the result (Off for ForceOff and
        /// GracefulShutdown, On for the others).
        #[arg(long)]
        wait: bool,
        /// Limit of the whole reset (task monitor and --wait included), and of each step of
        /// --strategy.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        wait_timeout: Duration,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Where the BMC is and how to log in: the `[boot]` settings as flags.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("password").required(true).args(["password_file", "password_env"])))]
pub struct BmcConn {
    /// BMC base URL, e.g. https://bmc-b (https required unless --insecure).
    #[arg(long)]
    url: String,
    /// The system: an @odata.id path, or its Id, Name or UUID. Default: the only system.
    #[arg(long)]
    system: Option<String>,
    /// User name.
    #[arg(long)]
    username: String,
    /// File whose first line is the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// CA certificate(s), PEM, to verify the BMC with instead of the system store.
    #[arg(long, conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// Do not verify the BMC's TLS certificate (and allow http://).
    #[arg(long)]
    insecure: bool,
    /// TCP + TLS connect timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Timeout of one request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Extra attempts after a transport failure.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

impl BmcConn {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let url: url::Url = self
            .url
            .parse()
            .with_context(|| format!("--url {:?}", self.url))?;
        if url.scheme() == "http" && !self.insecure {
            anyhow::bail!(
                "--url {}: http:// sends the password in clear text; use https:// or --insecure",
                self.url
            );
        }
        let source = match (&self.password_file, &self.password_env) {
            (Some(f), _) => PasswordSource::File(f.clone()),
            (None, Some(v)) => PasswordSource::Env(v.clone()),
            (None, None) => anyhow::bail!("--password-file or --password-env is required"),
        };
        Ok(Endpoint {
            url,
            system: self.system.clone(),
            username: self.username.clone(),
            password: source.load()?,
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retries: self.retries,
        })
    }
}

/// Runs one `failover bmc` subcommand.
pub async fn run(cmd: BmcCmd) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    match cmd {
        BmcCmd::Check { conn, json } => {
            let c = Client::connect(conn.endpoint()?).await?;
            let auth = if c.uses_session() { "session" } else { "basic" };
            let r = c.system().await;
            c.close().await;
            let sys = r?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!(
                    "{}",
                    json!({"system": sys.path, "power_state": sys.power_state,
                        "reset_types": sys.reset_types, "id": sys.id, "name": sys.name,
                        "uuid": sys.uuid, "auth": auth, "url": conn.url, "ms": ms})
                );
            } else {
                println!("bmc:         {} ({auth} auth)", conn.url);
                println!(
                    "system:      {} (Id {}, Name {})",
                    sys.path, sys.id, sys.name
                );
                println!("power state: {}", sys.power_state);
                println!("reset types: {}", sys.reset_types.join(", "));
                println!("took:        {ms:.1} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
        BmcCmd::Reset {
            conn,
            strategy: Some(strategy),
            types,
            wait_timeout,
            json,
            ..
        } => {
            let list = |d: &[&str]| {
                if types.is_empty() {
                    d.iter().map(|s| s.to_string()).collect()
                } else {
                    types.clone()
                }
            };
            let rb = RedfishFence {
                endpoint: conn.endpoint()?,
                off_types: list(redfish::OFF_TYPES),
                on_types: list(redfish::ON_TYPES),
                restart_types: list(redfish::RESTART_TYPES),
                fence_timeout: wait_timeout,
                on_timeout: wait_timeout,
                poll: Duration::from_millis(250),
            };
            let action = match strategy.as_str() {
                "off" => BootAction::Off,
                "on" => BootAction::On,
                _ => BootAction::Reboot,
            };
            rb.run(action, &|| {}).await?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!("{}", json!({"strategy": strategy, "done": true, "ms": ms}));
            } else {
                println!("{strategy} done after {ms:.1} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
        BmcCmd::Reset {
            conn,
            reset_type,
            wait,
            wait_timeout,
            json,
            ..
        } => {
            let reset_type = reset_type.unwrap_or_default();
            let c = Client::connect(conn.endpoint()?).await?;
            let work = async {
                let sys = c.system().await?;
                if !sys.reset_types.is_empty() && !sys.reset_types.contains(&reset_type) {
                    anyhow::bail!(
                        "--type {reset_type}: {} allows {}",
                        sys.path,
                        sys.reset_types.join(", ")
                    );
                }
                c.reset(&sys, &reset_type).await?;
                let accepted_ms = started.elapsed().as_secs_f64() * 1e3;
                let want = match reset_type.as_str() {
                    "ForceOff" | "GracefulShutdown" => Some("Off"),
                    "Nmi" | "PushPowerButton" => None,
                    _ => Some("On"),
                };
                let mut state = None;
                if let (true, Some(w)) = (wait, want) {
                    wait_power(&c, &sys, w, Duration::from_millis(250), wait_timeout).await?;
                    state = Some(w);
                }
                Ok((sys, accepted_ms, state))
            };
            // Bounds task monitors too; the session is still deleted after a timeout.
            let r = tokio::time::timeout(wait_timeout, work)
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "not done within --wait-timeout {wait_timeout:?}"
                    ))
                });
            c.close().await;
            let (sys, accepted_ms, state) = r?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!(
                    "{}",
                    json!({"system": sys.path, "reset_type": reset_type, "accepted_ms": accepted_ms,
                        "power_state": state, "ms": ms})
                );
            } else {
                println!(
                    "{reset_type} accepted by {} after {accepted_ms:.1} ms",
                    sys.path
                );
                if let Some(s) = state {
                    println!("power state {s} after {ms:.1} ms");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

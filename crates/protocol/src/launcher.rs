//! Starting a worker under a backend, and stopping it: politely (the host closes the connection and
//! the worker exits), then SIGTERM, then SIGKILL.
//!
//! The environment (address, secret, protocol list, pool directory) reaches the worker through the
//! environment of the launched command, never its command line: container runtimes get `-e NAME`
//! without a value, which copies the value from their own environment.

use crate::{Error, Result};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Where the pool directory appears inside a `namespace` worker.
pub const NAMESPACE_DIR: &str = "/mnt/shmpool-pool";

/// Environment variable with the host's pool directory, for the `namespace` script.
const HOST_DIR_ENV: &str = "SHMPOOL_HOST_DIR";

/// Runs `"$@"` in fresh PID, mount and IPC namespaces with an empty `/dev/shm` and the host's pool
/// directory bind-mounted at [`NAMESPACE_DIR`]: a stand-in for a container.
const NAMESPACE_SCRIPT: &str = r#"set -e
mount -t tmpfs tmpfs /mnt
mkdir -p /mnt/shmpool-pool
mount --bind "$SHMPOOL_HOST_DIR" /mnt/shmpool-pool
mount -t tmpfs tmpfs /dev/shm
export SHMPOOL_DIR=/mnt/shmpool-pool
exec "$@""#;

/// How a worker is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The command line itself.
    Process,
    /// `docker run` of an image, sharing the host's network and IPC namespace and the pool directory.
    Docker { image: String },
    /// `podman run`, like Docker.
    Podman { image: String },
    /// `apptainer exec` of an image with the pool directory bound (network, IPC and environment are
    /// shared by default).
    Apptainer { image: String },
    /// `conda run -n ENV`.
    Conda { env: String },
    /// `unshare --pid --fork --mount --ipc` with the pool directory bind-mounted (needs root).
    Namespace,
}

impl Backend {
    /// The backend called `name`, with its image or environment `arg` where it needs one.
    pub fn from_name(name: &str, arg: Option<&str>) -> Result<Backend> {
        let need = |what: &str| {
            arg.map(str::to_string).ok_or_else(|| Error::invalid(format!("backend {name:?} needs {what}")))
        };
        Ok(match name {
            "process" => Backend::Process,
            "namespace" => Backend::Namespace,
            "docker" => Backend::Docker { image: need("an image")? },
            "podman" => Backend::Podman { image: need("an image")? },
            "apptainer" => Backend::Apptainer { image: need("an image")? },
            "conda" => Backend::Conda { env: need("an environment name")? },
            other => {
                return Err(Error::invalid(format!(
                    "unknown backend {other:?} (known: process, docker, podman, apptainer, conda, namespace)"
                )))
            }
        })
    }

    /// The full command line running `argv` under this backend; `env_names` are the variables to
    /// pass, `dir` the pool directory.
    pub fn command_line(&self, argv: &[String], env_names: &[String], dir: &Path) -> Vec<String> {
        let dir = dir.display().to_string();
        let mut cmd: Vec<String> = match self {
            Backend::Process => vec![],
            Backend::Docker { image } | Backend::Podman { image } => {
                let tool = if matches!(self, Backend::Docker { .. }) { "docker" } else { "podman" };
                let mut c: Vec<String> =
                    [tool, "run", "--rm", "-i", "--init", "--network=host", "--ipc=host"].map(String::from).into();
                c.extend(["-v".into(), format!("{dir}:{dir}")]);
                for name in env_names {
                    c.extend(["-e".into(), name.clone()]);
                }
                c.push(image.clone());
                c
            }
            Backend::Apptainer { image } => {
                ["apptainer", "exec", "--bind"].map(String::from).into_iter().chain([dir, image.clone()]).collect()
            }
            Backend::Conda { env } => ["conda", "run", "--no-capture-output", "-n"]
                .map(String::from)
                .into_iter()
                .chain([env.clone()])
                .collect(),
            Backend::Namespace => {
                ["unshare", "--pid", "--fork", "--mount", "--ipc", "--kill-child=SIGKILL", "--", "sh", "-c"]
                    .map(String::from)
                    .into_iter()
                    .chain([NAMESPACE_SCRIPT.to_string(), "shmpool-worker".to_string()])
                    .collect()
            }
        };
        cmd.extend(argv.iter().cloned());
        cmd
    }

    /// The command running `argv` under this backend with `env` added to its environment.
    pub fn command(&self, argv: &[String], env: &[(String, String)], dir: &Path) -> Result<Command> {
        if argv.is_empty() {
            return Err(Error::invalid("empty worker command line"));
        }
        let mut env: Vec<(String, String)> = env.to_vec();
        match self {
            Backend::Namespace => env.push((HOST_DIR_ENV.into(), dir.display().to_string())),
            _ => env.push((shmpool::DIR_ENV.into(), dir.display().to_string())),
        }
        let names: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
        let line = self.command_line(argv, &names, dir);
        let mut cmd = Command::new(&line[0]);
        cmd.args(&line[1..]).envs(env);
        Ok(cmd)
    }
}

/// A started worker process. Dropping it kills the process if it still runs.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Spawns `cmd` (usually from [`Backend::command`]).
    pub fn spawn(mut cmd: Command) -> Result<WorkerProcess> {
        let child = cmd.spawn().map_err(|e| Error::io(format!("starting worker {:?}", cmd.get_program()), e))?;
        Ok(WorkerProcess { child })
    }

    /// The pid of the launched process (for container backends: of the runtime's client).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails if the process has exited (for [`super::Listener::accept`]'s check).
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Disconnected(format!("the worker exited ({status})"))),
            Err(e) => Err(Error::io("checking the worker", e)),
        }
    }

    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `grace` for the worker to exit by itself (close the connection first), then
    /// sends SIGTERM and waits one more second, then SIGKILL.
    pub fn shutdown(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.wait_for(grace) {
            return Ok(status);
        }
        // SAFETY: kill has no memory effects; the pid is our child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if let Some(status) = self.wait_for(Duration::from_secs(1)) {
            return Ok(status);
        }
        let _ = self.child.kill();
        self.child.wait().map_err(|e| Error::io("waiting for the worker", e))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(b: Backend) -> String {
        let argv = ["python3", "-m", "w"].map(String::from);
        b.command_line(&argv, &["SHMPOOL_SECRET".into(), "SHMPOOL_ADDRESS".into()], Path::new("/d")).join(" ")
    }

    #[test]
    fn command_lines() {
        assert_eq!(line(Backend::Process), "python3 -m w");
        assert_eq!(
            line(Backend::Docker { image: "img".into() }),
            "docker run --rm -i --init --network=host --ipc=host -v /d:/d -e SHMPOOL_SECRET -e SHMPOOL_ADDRESS img \
             python3 -m w"
        );
        assert!(line(Backend::Podman { image: "img".into() }).starts_with("podman run --rm -i --init"));
        assert_eq!(line(Backend::Apptainer { image: "a.sif".into() }), "apptainer exec --bind /d a.sif python3 -m w");
        assert_eq!(line(Backend::Conda { env: "nerf".into() }), "conda run --no-capture-output -n nerf python3 -m w");
        let ns = line(Backend::Namespace);
        assert!(ns.starts_with("unshare --pid --fork --mount --ipc --kill-child=SIGKILL -- sh -c"), "{ns}");
        assert!(ns.ends_with("shmpool-worker python3 -m w"), "{ns}");
    }

    #[test]
    fn the_secret_stays_off_command_lines() {
        let env = vec![("SHMPOOL_SECRET".to_string(), "deadbeef".to_string())];
        for b in [
            Backend::Process,
            Backend::Docker { image: "i".into() },
            Backend::Podman { image: "i".into() },
            Backend::Apptainer { image: "i".into() },
            Backend::Conda { env: "e".into() },
            Backend::Namespace,
        ] {
            let cmd = b.command(&["w".into()], &env, Path::new("/d")).unwrap();
            assert!(!cmd.get_args().any(|a| a.to_string_lossy().contains("deadbeef")), "{b:?}");
            assert!(cmd.get_envs().any(|(k, v)| k == "SHMPOOL_SECRET" && v.is_some_and(|v| v == "deadbeef")));
        }
        assert!(Backend::from_name("docker", None).is_err());
        assert!(Backend::from_name("vm", None).unwrap_err().to_string().contains("unknown backend"));
        assert_eq!(Backend::from_name("conda", Some("x")).unwrap(), Backend::Conda { env: "x".into() });
    }
}

//! The private PostgreSQL server used when no `DATABASE_URL` is given: a cluster
//! under the project's `.dvault/pg`, created with the system's `initdb` and started
//! with `pg_ctl` on a free port of 127.0.0.1 (the previous start's, when it is
//! free). It keeps running between commands (`dvault local stop` stops it).
//!
//! [`start_standby`] makes a streaming standby of such a server (`pg_basebackup -R`),
//! started and stopped the same way: what the replica test reads the API from.

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The database the private server holds for dvault.
pub const DATABASE: &str = "dvault";
/// The superuser initdb creates (trust authentication, local connections only).
pub const USER: &str = "dvault";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl via $DVAULT_PG_BINDIR, \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH).\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql`) or point dvault at a running \
         server with DATABASE_URL=postgres://user@host/db"
    )]
    NoBinaries,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "running as root, and no unprivileged user (postgres or nobody) exists to own the private server"
    )]
    NoUser,
}

/// A running private server.
#[derive(Debug, Clone)]
pub struct LocalServer {
    pub data_dir: PathBuf,
    pub port: u16,
}

impl LocalServer {
    /// Connection string for a database on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LocalError + 'a {
    move |source| LocalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The private server is configured for warehouse loads rather than PostgreSQL's
/// defaults, which suit a small shared machine (docs/operations.md, "Server settings
/// for warehouse loads", has the reasons and the figures for an external server).
/// Durability is untouched: `fsync` and `synchronous_commit` keep their defaults.
const WAREHOUSE_SETTINGS: &[(&str, &str)] = &[
    // a first load's vault and its indexes stay in memory (the default is 128 MB)
    ("shared_buffers", "512MB"),
    // a load writes gigabytes of WAL: checkpoints by time, not forced every 1 GB
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "15min"),
    ("checkpoint_completion_target", "0.9"),
    ("wal_compression", "lz4"),
    // the business vault's set-based statements sort and hash in memory
    ("work_mem", "64MB"),
    ("maintenance_work_mem", "512MB"),
    // the loader's statements are short and many: compiling them costs more than it
    // saves (0.5 s per statement in the business vault build, auto_explain's `JIT:`)
    ("jit", "off"),
];

/// Start the private server under `home` (creating it on first use), or find it
/// running. Safe to call from several processes at once.
pub fn ensure_running(home: &Path) -> Result<LocalServer, LocalError> {
    let pg_home = home.join("pg");
    fs::create_dir_all(&pg_home).map_err(io_err("cannot create", &pg_home))?;
    let pg_home = pg_home
        .canonicalize()
        .map_err(io_err("cannot resolve", &pg_home))?;
    let lock_path = pg_home.join("lock");
    let lock = File::create(&lock_path).map_err(io_err("cannot create", &lock_path))?;
    lock.lock().map_err(io_err("cannot lock", &lock_path))?;

    let data_dir = pg_home.join("data");
    if let Some(port) = running_port(&data_dir) {
        return Ok(LocalServer { data_dir, port });
    }
    let bin = find_bindir()?;
    let owner = server_owner()?;
    if !data_dir.join("PG_VERSION").exists() {
        init_cluster(&bin, &pg_home, &data_dir, owner.as_ref())?;
    }
    // the port of the last start if it is free, so clients holding the URL reconnect
    let port = match previous_port(&pg_home) {
        Some(port) => port,
        None => {
            free_port().map_err(io_err("cannot find a free port on", Path::new("127.0.0.1")))?
        }
    };
    let log = pg_home.join("server.log");
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=on {}",
        WAREHOUSE_SETTINGS
            .iter()
            .map(|(name, value)| format!("-c {name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    run(
        "pg_ctl start",
        Command::new(bin.join("pg_ctl"))
            .arg("start")
            .arg("--wait")
            .arg("--silent")
            .arg("-D")
            .arg(&data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options),
        owner.as_ref(),
    )
    .map_err(|e| match e {
        LocalError::Command { what, detail } => LocalError::Command {
            what,
            detail: format!("{detail}\n(server log: {})", log.display()),
        },
        other => other,
    })?;
    let port = running_port(&data_dir).ok_or_else(|| LocalError::Command {
        what: "pg_ctl start".into(),
        detail: format!(
            "the server did not come up; see {}",
            pg_home.join("server.log").display()
        ),
    })?;
    let _ = fs::write(pg_home.join(PORT_FILE), format!("{port}\n"));
    tracing::info!(data_dir = %data_dir.display(), port, "started the private PostgreSQL server");
    Ok(LocalServer { data_dir, port })
}

/// Does the private server under `home` run?
pub fn is_running(home: &Path) -> bool {
    running_port(&home.join("pg").join("data")).is_some()
}

/// Stop the private server if it runs. Returns whether it was running.
pub fn stop(home: &Path) -> Result<bool, LocalError> {
    let data_dir = home.join("pg").join("data");
    if running_port(&data_dir).is_none() {
        return Ok(false);
    }
    // pg_ctl may run as another user from `/`: give it an absolute path
    let data_dir = data_dir
        .canonicalize()
        .map_err(io_err("cannot resolve", &data_dir))?;
    let bin = find_bindir()?;
    run(
        "pg_ctl stop",
        Command::new(bin.join("pg_ctl"))
            .args(["stop", "--wait", "--silent", "-m", "fast", "-D"])
            .arg(&data_dir),
        server_owner()?.as_ref(),
    )?;
    Ok(true)
}

/// The port of the server running on `data_dir`, read from `postmaster.pid`
/// (line 4), if that process is alive.
fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = pid_file.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    // signal 0: does the process exist?
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    alive.then_some(port)
}

/// Where the port of the last start is kept (under `home/pg`).
const PORT_FILE: &str = "port";

/// The port the server last ran on, if it can be bound now.
fn previous_port(pg_home: &Path) -> Option<u16> {
    let port: u16 = fs::read_to_string(pg_home.join(PORT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// An unprivileged account to run the server as, when we are root (initdb and
/// postgres refuse to run as root).
#[derive(Debug, Clone)]
struct Owner {
    uid: u32,
    gid: u32,
}

fn server_owner() -> Result<Option<Owner>, LocalError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc_geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4
                && fields[0] == wanted
                && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
            {
                return Ok(Some(Owner { uid, gid }));
            }
        }
    }
    Err(LocalError::NoUser)
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Start a streaming standby of the private server `primary` under `home` (laid out
/// like a private server: [`ensure_running`] and [`stop`] start and stop it, on the
/// same port). The first call copies the primary with `pg_basebackup -R` (every
/// database of it: meant for small private servers; initdb's `pg_hba.conf` lets
/// 127.0.0.1 replicate). Returns the standby, running.
pub fn start_standby(primary: &LocalServer, home: &Path) -> Result<LocalServer, LocalError> {
    let pg_home = home.join("pg");
    fs::create_dir_all(&pg_home).map_err(io_err("cannot create", &pg_home))?;
    let pg_home = pg_home
        .canonicalize()
        .map_err(io_err("cannot resolve", &pg_home))?;
    let data_dir = pg_home.join("data");
    if !data_dir.join("PG_VERSION").exists() {
        let bin = find_bindir()?;
        let owner = server_owner()?;
        if let Some(owner) = &owner {
            hand_over(&pg_home, owner)?;
        }
        run(
            "pg_basebackup",
            Command::new(bin.join("pg_basebackup"))
                .arg("-D")
                .arg(&data_dir)
                .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
                .args(["-U", USER, "-R", "-X", "stream", "-c", "fast"]),
            owner.as_ref(),
        )?;
    }
    ensure_running(home)
}

/// Give `pg_home` to the server's user, and let it reach the directory.
fn hand_over(pg_home: &Path, owner: &Owner) -> Result<(), LocalError> {
    std::os::unix::fs::chown(pg_home, Some(owner.uid), Some(owner.gid))
        .map_err(io_err("cannot hand over", pg_home))?;
    // the server's user must be able to reach its directory
    let mut dir = pg_home.parent();
    while let Some(d) = dir {
        if let Ok(meta) = fs::metadata(d) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                let mut perms = meta.permissions();
                perms.set_mode(mode | 0o001);
                fs::set_permissions(d, perms).map_err(io_err("cannot open up", d))?;
            }
        }
        dir = d.parent();
    }
    Ok(())
}

fn init_cluster(
    bin: &Path,
    pg_home: &Path,
    data_dir: &Path,
    owner: Option<&Owner>,
) -> Result<(), LocalError> {
    if let Some(owner) = owner {
        hand_over(pg_home, owner)?;
    }
    run(
        "initdb",
        Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(data_dir)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]),
        owner,
    )?;
    Ok(())
}

fn run(what: &str, cmd: &mut Command, owner: Option<&Owner>) -> Result<Output, LocalError> {
    if let Some(owner) = owner {
        cmd.uid(owner.uid).gid(owner.gid);
        cmd.current_dir("/");
    }
    let out = cmd.output().map_err(|e| LocalError::Command {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(LocalError::Command {
            what: what.to_string(),
            detail,
        });
    }
    Ok(out)
}

/// Find the directory holding `initdb` and `pg_ctl`.
pub fn find_bindir() -> Result<PathBuf, LocalError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("DVAULT_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let dir = entry.path().join("bin");
            has_server(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    Err(LocalError::NoBinaries)
}

//! A real PostgreSQL for tests: a throwaway cluster (`initdb` + `pg_ctl`)
//! in a temporary directory, listening on 127.0.0.1 at a free port and on a
//! unix socket beside its data, stopped and removed when the last test
//! holding it is done. Tests share one cluster while they overlap and each
//! takes a database of its own (`Cluster::database`).
//!
//! initdb refuses to run as root: as root, the directory is handed to the
//! `postgres` system user and the server runs as it (`runuser`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The newest installed server's programs (Debian's layout).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}; install postgresql (.ci/run does)", root.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
        .1
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    /// The cluster the running tests share, started if none is running.
    pub fn shared() -> Arc<Cluster> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Cluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0;
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                status.success(),
                "chown the cluster's directory to postgres"
            );
        }
        let data = dir.path().join("data");
        let mut cluster = Cluster {
            _dir: dir,
            data,
            bin,
            as_postgres,
            port: 0,
        };
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "memofab", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket_dir = cluster.data.parent().expect("a parent").to_path_buf();
        // Another process may take the free port before the server binds it.
        for _ in 0..5 {
            cluster.port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off -c max_connections=200",
                cluster.port,
                socket_dir.display()
            );
            let out = cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(&cluster.data)
                .arg("-l")
                .arg(socket_dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("pg_ctl runs");
            if out.status.success() {
                return cluster;
            }
        }
        let log = std::fs::read_to_string(socket_dir.join("server.log")).unwrap_or_default();
        panic!("the PostgreSQL server did not start: {log}");
    }

    /// One of the server's programs, as the user it must run as.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A URL for the cluster's database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://memofab@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database for one test; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.url("postgres");
        let sql = format!("CREATE DATABASE {name}");
        // On a thread of its own: the blocking client panics inside a runtime.
        std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls)?;
            client.batch_execute(&sql)
        })
        .join()
        .expect("the admin thread")
        .expect("CREATE DATABASE");
        self.url(&name)
    }

    /// Runs `sql` on the database at `url` and returns every value of its
    /// rows as text (for tests that read what was stored).
    pub fn query_text(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let (url, sql) = (url.to_owned(), sql.to_owned());
        std::thread::spawn(move || -> Result<_, ::postgres::Error> {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls)?;
            let messages = client.simple_query(&sql)?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    ::postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
        .join()
        .expect("the query thread")
        .expect("the query")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

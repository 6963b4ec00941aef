//! Engine processes a test owns, so that it can kill and restart them without touching the engines the
//! other tests share: a redis-server without persistence, and a single-member etcd whose data dir outlives
//! its restarts. Both come from Debian's packages, which `.ci/run` installs; each listens on loopback on
//! free ports and is killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imcloud_common::test_name::unique_test_name;

use super::{WAIT, free_ports};

fn wait_accepting(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A redis-server on a free port; a restart comes back empty, as a Redis without persistence does.
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let mut r = OwnRedis {
            port: free_ports(1)[0],
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again, empty) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian redis-server, installed by .ci/run)");
        self.child = Some(child);
        wait_accepting(self.port, "redis-server");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A single-member etcd on free ports; a restart keeps its data dir, as a restarted etcd pod does.
pub struct OwnEtcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnEtcd {
    pub fn start() -> OwnEtcd {
        let p = free_ports(2);
        let mut e = OwnEtcd {
            client_port: p[0],
            peer_port: p[1],
            dir: std::env::temp_dir().join(unique_test_name("imcloud-own-etcd")),
            child: None,
        };
        e.restart();
        e
    }

    /// The value of `IMCLOUD_ETCD_ENDPOINTS` for it.
    pub fn endpoints(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Starts it (again, on the same data) and waits until it accepts connections.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name=own")
            .arg(format!("--data-dir={}", self.dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=own={peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd (Debian etcd-server, installed by .ci/run)");
        self.child = Some(child);
        wait_accepting(self.client_port, "etcd");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        kill(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

/// A PostgreSQL cluster of its own (initdb into a temp dir, trust auth, loopback, a free port), run as the
/// `postgres` user when the test runs as root, as Debian's server refuses to run as root. `stop` is an
/// immediate shutdown (a crash, as far as clients can tell); `start` brings the same data back.
pub struct OwnPostgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("/usr/lib/postgresql (Debian postgresql, installed by .ci/run)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("a PostgreSQL server under /usr/lib/postgresql/*/bin");
        let dir = std::env::temp_dir().join(unique_test_name("imcloud-own-pg"));
        std::fs::create_dir_all(&dir).expect("PostgreSQL dir");
        let mut pg = OwnPostgres {
            port: free_ports(1)[0],
            dir,
            bin,
            running: false,
        };
        pg.chown_to_postgres();
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.resume();
        pg
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server on the data it had and waits until it accepts connections.
    pub fn resume(&mut self) {
        let data = self.data();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
        );
        self.running = true;
        wait_accepting(self.port, "PostgreSQL");
    }

    /// An immediate shutdown: every connection drops at once, as in a crash.
    pub fn stop(&mut self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        self.running = false;
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Whether the test runs as root (the owner of `/proc/self` is the process's effective user).
    fn as_root() -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    fn chown_to_postgres(&self) {
        if OwnPostgres::as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {} to postgres", self.dir.display());
        }
    }

    /// One of the server's programs, as the `postgres` user when we are root.
    fn tool(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if OwnPostgres::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().expect(tool);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self
                .tool("pg_ctl")
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A single-node Apache Kafka (KRaft, broker and controller in one JVM) on free ports, from the jars
/// `scripts/lib.sh ensure_kafka` fetched (`IMCLOUD_TEST_KAFKA_HOME`, else the newest `.cache/kafka-*`).
/// `kill` is a SIGKILL; `restart` brings the broker back on the same log dir, topics and offsets.
pub struct OwnKafka {
    port: u16,
    dir: PathBuf,
    home: PathBuf,
    child: Option<Child>,
}

impl OwnKafka {
    pub fn start() -> OwnKafka {
        let home = std::env::var_os("IMCLOUD_TEST_KAFKA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache");
                std::fs::read_dir(cache)
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("kafka-"))
                            && p.join("libs").is_dir()
                    })
                    .max()
            })
            .expect("Kafka's jars: run `. scripts/lib.sh; ensure_kafka` (.ci/run does)");
        let p = free_ports(2);
        let dir = std::env::temp_dir().join(unique_test_name("imcloud-own-kafka"));
        std::fs::create_dir_all(&dir).expect("Kafka dir");
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{c}\n\
             listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{b}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=PLAINTEXT\nlog.dirs={d}/data\nnum.partitions=1\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            b = p[0],
            c = p[1],
            d = dir.display()
        );
        std::fs::write(dir.join("server.properties"), props).expect("server.properties");
        let mut k = OwnKafka {
            port: p[0],
            dir,
            home,
            child: None,
        };
        let id = k
            .java("kafka.tools.StorageTool")
            .arg("random-uuid")
            .output()
            .expect("java");
        let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
        let out = k
            .java("kafka.tools.StorageTool")
            .args(["format", "-t", &id, "-c"])
            .arg(k.dir.join("server.properties"))
            .output()
            .expect("java");
        assert!(
            out.status.success(),
            "formatting Kafka's log dir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        k.restart();
        k
    }

    /// The value of `IMCLOUD_KAFKA_BROKERS` for it.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn java(&self, main: &str) -> Command {
        let mut c = Command::new("java");
        c.args(["-Xms128m", "-Xmx384m", "-XX:+UseG1GC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}/../scripts/kafka/log4j2.properties",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("-cp")
            .arg(format!("{}/libs/*", self.home.display()))
            .arg(main);
        c
    }

    /// Starts the broker (again, on the same log dir) and waits until it has started.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        let log_path = self.dir.join("kafka.log");
        let log = std::fs::File::create(&log_path).expect("Kafka log");
        let child = self
            .java("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(Stdio::from(log.try_clone().expect("Kafka log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("java (Debian openjdk-17-jre-headless)");
        self.child = Some(child);
        // A JVM on two busy cores can take a while.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("Kafka Server started") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("Kafka exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "Kafka did not start within 120 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        kill(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

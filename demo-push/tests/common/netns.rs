//! Test hosts in network namespaces, for partition tests: a Linux bridge in the root
//! namespace on a private subnet `10.201.<n>.0/24` of its own, and one namespace per host
//! joined to it by a veth pair. The bridge also carries one address for a Redis proxy and
//! one for a MariaDB proxy (forwarding to the machine's loopback-only servers), so a host
//! can be cut from one and not the other. The test process stays in the root namespace and
//! reaches every host through the bridge.
//!
//! A cut is silent, like a real partition: the cut host's kernel is given a permanent,
//! bogus neighbour (MAC) entry for the target address, so its frames to the target go to
//! no one — connects and calls time out, nothing is reset. (`ip route add blackhole` is
//! not silent for the host's own sockets: their `connect` fails at once with `EINVAL`; and
//! this kernel has no tc drop action and no iptables.) A cut between two hosts is made on
//! both sides.
//!
//! Needs root and iproute2. Where a namespace cannot be made, [`Net::create`] prints
//! `skipped: …` (why) to stderr and answers `None`: the test returns and passes.
//!
//! Everything is removed on drop, also when the test panics: the processes still in each
//! namespace (SIGKILL), the namespaces, the veth pairs and the bridge (with its
//! addresses).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use super::cluster::Placement;
use super::proxy::Proxy;

/// The MAC a cut host sends the target's frames to: locally administered, used by no one.
const NOWHERE: &str = "02:00:00:00:de:ad";
/// Subnets 10.201.<n>.0/24 tried, from one chosen by the process id.
const SUBNETS: u32 = 200;
/// Probe namespaces made by this process (tests may run in parallel in one process).
static PROBES: AtomicU32 = AtomicU32::new(0);

/// One test host: a network namespace with one interface on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace (`ip netns exec <ns> …`).
    pub ns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// The root-side end of its veth pair (on the bridge).
    veth: String,
}

impl Host {
    /// How the cluster runs a process on this host.
    pub fn placement(&self) -> Placement {
        Placement {
            wrapper: vec!["ip".into(), "netns".into(), "exec".into(), self.ns.clone()],
            ip: self.ip.to_string(),
        }
    }
}

/// The bridge, its hosts and the root-side proxies; removed on drop.
pub struct Net {
    /// The subnet's third octet, reserved by creating the bridge (names are unique per
    /// kernel, so two test processes never share one).
    n: u32,
    bridge: String,
    hosts: Mutex<Vec<Host>>,
    /// Redis (127.0.0.1:6379) through the bridge, at `10.201.<n>.2`.
    pub redis: Proxy,
    /// MariaDB (127.0.0.1:3306) through the bridge, at `10.201.<n>.3`.
    pub mysql: Proxy,
}

/// What `host`'s neighbour table says of `target` (empty: nothing).
fn neighbour(host: &Host, target: Ipv4Addr) -> String {
    let out = Command::new("ip")
        .args([
            "-n",
            &host.ns,
            "neigh",
            "show",
            &target.to_string(),
            "dev",
            "eth0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("`ip neigh show` runs");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

/// Runs `ip args…`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A bridge on a free subnet with the two proxies on it; `None` (after printing
    /// `skipped: …` for `test`) where namespaces cannot be made here.
    pub async fn create(test: &str) -> Option<Net> {
        match Net::try_create().await {
            Ok(net) => Some(net),
            Err(why) => {
                eprintln!(
                    "skipped: {test} needs root and iproute2 (network namespaces, veth, a bridge): {why}"
                );
                None
            }
        }
    }

    async fn try_create() -> Result<Net, String> {
        // Can a namespace be made at all? (Not root, no iproute2, no netns support.)
        let probe = format!(
            "llprobe{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &probe])?;
        ip(&["netns", "del", &probe])?;
        let start = std::process::id() % SUBNETS;
        let mut reserved = None;
        for i in 0..SUBNETS {
            let n = (start + i) % SUBNETS + 20;
            let bridge = format!("llpt{n}");
            match ip(&["link", "add", &bridge, "type", "bridge"]) {
                Ok(()) => {
                    reserved = Some((n, bridge));
                    break;
                }
                Err(e) if e.contains("exists") => continue,
                Err(e) => return Err(e),
            }
        }
        let (n, bridge) = reserved.ok_or("every test subnet 10.201.20-219.0/24 is in use")?;
        // From here on, Drop removes what was made.
        let setup = async {
            for k in 1..=3 {
                ip(&["addr", "add", &format!("10.201.{n}.{k}/24"), "dev", &bridge])?;
            }
            ip(&["link", "set", &bridge, "up"])?;
            let redis = Proxy::start_on(&format!("10.201.{n}.2:0"), "127.0.0.1:6379").await;
            let mysql = Proxy::start_on(&format!("10.201.{n}.3:0"), "127.0.0.1:3306").await;
            Ok::<_, String>((redis, mysql))
        };
        match setup.await {
            Ok((redis, mysql)) => Ok(Net {
                n,
                bridge,
                hosts: Mutex::new(Vec::new()),
                redis,
                mysql,
            }),
            Err(e) => {
                let _ = ip(&["link", "del", &bridge]);
                Err(e)
            }
        }
    }

    /// The Redis proxy's address on the bridge.
    pub fn redis_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 2)
    }

    /// The MariaDB proxy's address on the bridge.
    pub fn mysql_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 3)
    }

    /// A new host (namespace) on the bridge, `lo` up, at `10.201.<n>.<10 + k>`.
    pub fn host(&self) -> Host {
        let mut hosts = self.hosts.lock();
        let k = hosts.len() as u32 + 10;
        let host = Host {
            ns: format!("llpt{}h{k}", self.n),
            ip: Ipv4Addr::new(10, 201, self.n as u8, k as u8),
            veth: format!("llpt{}v{k}", self.n),
        };
        // A namespace left by a test process that was SIGKILLed is replaced.
        if ip(&["netns", "add", &host.ns]).is_err() {
            let _ = ip(&["netns", "del", &host.ns]);
            ip(&["netns", "add", &host.ns]).expect("a network namespace");
        }
        hosts.push(host.clone());
        let ns = host.ns.as_str();
        let addr = format!("{}/24", host.ip);
        for args in [
            vec![
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
            vec!["link", "set", &host.veth, "master", &self.bridge, "up"],
            vec!["-n", ns, "addr", "add", &addr, "dev", "eth0"],
            vec!["-n", ns, "link", "set", "eth0", "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ] {
            ip(&args).unwrap();
        }
        host
    }

    /// `host` can no longer reach `target`: its frames to it go nowhere (silently).
    pub fn cut(&self, host: &Host, target: Ipv4Addr) {
        ip(&[
            "-n",
            &host.ns,
            "neigh",
            "replace",
            &target.to_string(),
            "lladdr",
            NOWHERE,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
        let entry = neighbour(host, target);
        assert!(
            entry.contains(NOWHERE) && entry.contains("permanent"),
            "the cut of {target} from {} is not in its neighbour table: {entry:?}",
            host.ns
        );
    }

    /// Undoes [`cut`](Net::cut): the target's address is resolved again.
    pub fn heal(&self, host: &Host, target: Ipv4Addr) {
        ip(&[
            "-n",
            &host.ns,
            "neigh",
            "del",
            &target.to_string(),
            "dev",
            "eth0",
        ])
        .unwrap();
        let entry = neighbour(host, target);
        assert!(
            !entry.contains(NOWHERE),
            "{target} is still cut from {}: {entry:?}",
            host.ns
        );
    }

    /// Neither host reaches the other.
    pub fn cut_between(&self, a: &Host, b: &Host) {
        self.cut(a, b.ip);
        self.cut(b, a.ip);
    }

    /// Undoes [`cut_between`](Net::cut_between).
    pub fn heal_between(&self, a: &Host, b: &Host) {
        self.heal(a, b.ip);
        self.heal(b, a.ip);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in self.hosts.lock().drain(..) {
            // Whatever still runs there (the cluster kills its processes first).
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &host.ns])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = ip(&["netns", "del", &host.ns]);
            // Gone with the namespace's end, unless that is still being torn down.
            let _ = ip(&["link", "del", &host.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

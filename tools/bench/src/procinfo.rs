//! What `/proc` says about the processes under test: resident memory, CPU
//! time, and which process listens on a port.

use std::time::Instant;

use serde::Serialize;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux this runs on.
    100.0
}

/// The pid of the process listening on TCP `port` (IPv4 or IPv6).
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let local_port = f.get(1)?.rsplit(':').next()?;
                    let listening = *f.get(3)? == "0A";
                    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                        .then(|| f.get(9).map(|s| format!("socket:[{s}]")))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// A process whose CPU use is reported: `name=pid`.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = s.split_once('=').ok_or("expected name=pid")?;
        Ok(Watched {
            name: name.into(),
            pid: pid.parse().map_err(|e| format!("pid: {e}"))?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub name: String,
    pub pid: u32,
    /// CPU seconds over the window divided by its length: 1.0 = one core.
    pub cores: f64,
    /// CPU seconds over the window.
    pub cpu_seconds: f64,
    pub rss_mib: f64,
}

/// CPU times of the watched processes (and this one) at the start of a window.
pub struct CpuWindow {
    at: Instant,
    start: Vec<(Watched, f64)>,
}

impl CpuWindow {
    pub fn start(watched: &[Watched]) -> CpuWindow {
        let me = Watched {
            name: "weir-bench".into(),
            pid: std::process::id(),
        };
        let start = watched
            .iter()
            .cloned()
            .chain([me])
            .map(|w| {
                let t = cpu_seconds(w.pid).unwrap_or(0.0);
                (w, t)
            })
            .collect();
        CpuWindow {
            at: Instant::now(),
            start,
        }
    }

    /// CPU seconds each watched process (and this one) used since the start.
    pub fn spent(&self) -> Vec<(String, f64)> {
        self.start
            .iter()
            .map(|(w, t0)| (w.name.clone(), cpu_seconds(w.pid).map_or(0.0, |t| t - t0)))
            .collect()
    }

    pub fn finish(&self) -> Vec<CpuUse> {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        self.start
            .iter()
            .map(|(w, t0)| {
                let spent = cpu_seconds(w.pid).map_or(0.0, |t| t - t0);
                CpuUse {
                    name: w.name.clone(),
                    pid: w.pid,
                    cores: spent / secs,
                    cpu_seconds: spent,
                    rss_mib: rss_kib(w.pid).unwrap_or(0) as f64 / 1024.0,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(me));
    }
}

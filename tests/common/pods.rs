//! A rendered pod's container started as a real process, the way the
//! kubelet would start it: its command and args, and only its environment
//! (plain values, `secretKeyRef`s resolved from the given Secrets,
//! `fieldRef: metadata.name` = the pod's name). The image's binaries
//! `weir-edge` and `weir-producer` are the test build's `weir edge` and
//! `weir producer` (the same configuration, `src/main.rs`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::helm::{container, port_named, secret_value};
use super::{Node, Proc};

/// What the kubelet would hand the process: argv and environment.
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The image's binaries as the test build runs them.
fn argv_of(image_argv: &[String]) -> Vec<String> {
    let (bin, rest) = image_argv
        .split_first()
        .expect("the container has a command");
    let role = match bin.as_str() {
        "weir-edge" => "edge",
        "weir-producer" => "producer",
        other => panic!("the container runs {other}, which the image does not hold"),
    };
    let mut argv = vec![env!("CARGO_BIN_EXE_weir").to_owned(), role.to_owned()];
    argv.extend(rest.iter().cloned());
    argv
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Resolves `container`'s command, args and env; `secrets` are the Secrets
/// of the namespace (rendered by the chart, or the user's own).
pub fn launch(container: &Value, secrets: &[&Value], pod_name: &str) -> Launch {
    let mut image_argv = strings(&container["command"]);
    image_argv.extend(strings(&container["args"]));
    let mut env = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_owned();
        if let Some(v) = e["value"].as_str() {
            env.push((name, v.to_owned()));
            continue;
        }
        let from = &e["valueFrom"];
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            assert_eq!(
                path, "metadata.name",
                "{name}: fieldRef {path} is not simulated"
            );
            env.push((name, pod_name.to_owned()));
        } else if from["secretKeyRef"].is_object() {
            let r = &from["secretKeyRef"];
            let (secret, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            let value = secrets
                .iter()
                .find(|s| s["metadata"]["name"] == secret)
                .and_then(|s| secret_value(s, key));
            match value {
                Some(v) => env.push((name, v)),
                None if r["optional"] == true => {}
                None => panic!("{name}: Secret {secret} has no key {key}: the pod would not start"),
            }
        } else {
            panic!("{name}: valueFrom {from} is not simulated");
        }
    }
    Launch {
        argv: argv_of(&image_argv),
        env,
    }
}

/// Starts the Deployment's container `name` as pod `pod_name`, logging to
/// `<dir>/<pod_name>.log`, and waits until its readiness probe answers 2xx.
pub fn start_pod(
    dir: &Path,
    deployment: &Value,
    name: &str,
    secrets: &[&Value],
    pod_name: &str,
) -> Node {
    let c = container(deployment, name);
    let Launch { argv, env } = launch(c, secrets, pod_name);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(env);
    let proc = Proc::spawn_logged(pod_name, cmd, dir.join(format!("{pod_name}.log")));
    let probe = &c["readinessProbe"]["httpGet"];
    let port = match &probe["port"] {
        Value::String(named) => port_named(c, named),
        Value::Number(n) => n.as_u64().unwrap(),
        other => panic!("readiness port {other}"),
    } as u16;
    let url = format!("http://127.0.0.1:{port}{}", probe["path"].as_str().unwrap());
    super::wait_http_ok(&url);
    Node {
        proc,
        port,
        id: pod_name.to_owned(),
    }
}

/// Waits for the process to exit by itself; how long it took, or `None`.
pub fn exits_within(proc: &mut Proc, within: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    proc.wait_exit(within).then(|| start.elapsed())
}

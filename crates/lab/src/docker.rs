//! Docker on lab hosts: each host runs its own dockerd inside its namespace (own data and
//! exec roots, own API socket, and its own `/run/docker/plugins` through a mount namespace)
//! and the Calico Docker plugin, so Docker containers on different lab hosts are on
//! different Calico hosts. `"type": "DOCKER"` apps run through that dockerd on the `calico`
//! network, as the Mesos Docker containerizer runs them.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{Host, Lab, Task, ip, run};

/// The image every Docker task runs: busybox-static, imported from the local binary.
pub const IMAGE: &str = "calico-lab/busybox:1";
/// Label prefix whose labels become the endpoint's labels.
const LABEL_PREFIX: &str = "org.projectcalico.label.";

impl Lab {
    /// Everything Docker of host `h` keeps (data, exec root, socket, plugin directory).
    pub(crate) fn docker_dir(&self, h: &str) -> PathBuf {
        self.dir.join("docker").join(h)
    }

    /// The Engine API socket of host `h`'s dockerd.
    pub fn docker_socket(&self, h: &str) -> PathBuf {
        self.docker_dir(h).join("docker.sock")
    }

    /// The plugin directory host `h`'s dockerd sees as `/run/docker/plugins`.
    pub(crate) fn docker_plugins(&self, h: &str) -> PathBuf {
        self.docker_dir(h).join("plugins")
    }

    /// `docker` against host `h`'s dockerd.
    pub fn docker(&self, h: &str, args: &[&str]) -> anyhow::Result<String> {
        let host = format!("unix://{}", self.docker_socket(h).display());
        run(Command::new("docker").args(["-H", &host]).args(args))
    }

    /// Starts the Calico Docker plugin and dockerd on host `h`, waits for dockerd, and
    /// imports the task image.
    pub(crate) fn start_docker(&self, h: &Host) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.docker_plugins(&h.name))?;
        std::fs::create_dir_all("/run/docker/plugins")?;
        self.start_plugin(h)?;
        self.start_dockerd(h)?;
        self.import_image(&h.name)
    }

    fn log(&self, name: &str, h: &Host) -> anyhow::Result<std::fs::File> {
        let p = self.dir.join(format!("{name}-{}.log", h.name));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))
    }

    fn start_plugin(&self, h: &Host) -> anyhow::Result<()> {
        let plugins = self.docker_plugins(&h.name);
        self.say(format!("starting the Calico Docker plugin on {}", h.name));
        let plugin = self.log("libnetwork", h)?;
        Command::new("ip")
            .args(["netns", "exec", &h.netns])
            .arg(self.binary("calico-libnetwork-plugin")?)
            .args(["--node", &h.name])
            .arg("--plugin-dir")
            .arg(&plugins)
            .arg("--docker-socket")
            .arg(self.docker_socket(&h.name))
            .envs(self.datastore_env(&self.state()?))
            .stdin(Stdio::null())
            .stdout(plugin.try_clone()?)
            .stderr(plugin)
            .process_group(0)
            .spawn()
            .context("starting calico-libnetwork-plugin")?;
        Ok(())
    }

    /// Starts dockerd on host `h` (live-restore: containers outlive a restart of it, as an
    /// operator of Calico's Docker networking should run it) and waits until it answers.
    fn start_dockerd(&self, h: &Host) -> anyhow::Result<()> {
        let dir = self.docker_dir(&h.name);
        let plugins = self.docker_plugins(&h.name);
        self.say(format!("starting dockerd on {}", h.name));
        let daemon = self.log("dockerd", h)?;
        // Its own /run/docker/plugins: the plugin directory is not a dockerd option.
        let script = format!(
            "mount --make-rprivate / && mount --bind '{plugins}' /run/docker/plugins && exec dockerd \
             --data-root '{data}' --exec-root '{exec}' --pidfile '{dir}/docker.pid' -H 'unix://{sock}' \
             --containerd-namespace '{ns}' --containerd-plugins-namespace '{ns}-plugins' \
             --iptables=false --ip-masq=false --bridge=none --live-restore",
            plugins = plugins.display(),
            data = dir.join("data").display(),
            exec = dir.join("exec").display(),
            dir = dir.display(),
            sock = self.docker_socket(&h.name).display(),
            ns = h.netns,
        );
        // nsenter, not `ip netns exec`: that remounts /sys, and dockerd needs the cgroup
        // mounts under it.
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.netns))
            .args(["unshare", "-m", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(daemon.try_clone()?)
            .stderr(daemon)
            .process_group(0)
            .spawn()
            .context("starting dockerd (Debian package docker.io)")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.docker(&h.name, &["info"]).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "dockerd on {} did not start; see {}",
                    h.name,
                    self.dir.join(format!("dockerd-{}.log", h.name)).display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Restarts dockerd on `host` (SIGTERM, then start): its containers keep running.
    pub fn restart_dockerd(&self, host: &str) -> anyhow::Result<()> {
        let h = self.host(host)?;
        let pidfile = self.docker_dir(host).join("docker.pid");
        let pid = std::fs::read_to_string(&pidfile)
            .with_context(|| format!("reading {}", pidfile.display()))?;
        run(Command::new("kill").arg(pid.trim()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        // Gone, or a zombie of the process that started it.
        let alive = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| st.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
        };
        while alive(pid.trim()) {
            if Instant::now() > deadline {
                bail!("dockerd on {host} did not exit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.start_dockerd(&h)
    }

    /// Restarts the Calico Docker plugin on `host` (kill, start, wait for its socket).
    pub fn restart_docker_plugin(&self, host: &str) -> anyhow::Result<()> {
        let h = self.host(host)?;
        self.stop_program(&h, "calico-libnetwork-plugin")?;
        let socket = self.docker_plugins(host).join("calico.sock");
        let _ = std::fs::remove_file(&socket);
        self.start_plugin(&h)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("the plugin on {host} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn import_image(&self, h: &str) -> anyhow::Result<()> {
        let root = self.dir.join("image-root");
        if !root.exists() {
            std::fs::create_dir_all(root.join("bin"))?;
            std::fs::copy("/bin/busybox", root.join("bin/busybox"))
                .context("copying /bin/busybox (Debian package busybox-static)")?;
            for tool in [
                "sh", "mkdir", "echo", "httpd", "wget", "sleep", "ip", "ping", "cat",
            ] {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(tool))?;
            }
        }
        let sock = self.docker_socket(h);
        run(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -c . | docker -H 'unix://{}' import - {IMAGE}",
            root.display(),
            sock.display()
        )))
        .map(drop)
    }

    /// Starts task `id` of `app` as a Docker container on host `h`'s `calico` network.
    pub(crate) fn start_docker_task(
        &self,
        h: &Host,
        id: &str,
        app: &str,
        labels: &BTreeMap<String, String>,
        k: u32,
    ) -> anyhow::Result<Task> {
        // calico-node creates the network once dockerd and the plugin run.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .docker(&h.name, &["network", "inspect", "calico"])
            .is_err()
        {
            if Instant::now() > deadline {
                bail!(
                    "calico-node on {} did not create the calico Docker network",
                    h.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut args: Vec<String> = ["run", "-d", "--name", id, "--network", "calico"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{LABEL_PREFIX}{k}={v}"));
        }
        args.extend([
            IMAGE.to_owned(),
            "sh".into(),
            "-c".into(),
            format!("mkdir -p /www && echo '{id}' > /www/id && exec httpd -f -p 80 -h /www"),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&h.name, &argv)?;
        let inspect = self.docker(
            &h.name,
            &[
                "inspect",
                "-f",
                "{{.State.Pid}} {{.NetworkSettings.Networks.calico.EndpointID}} {{.NetworkSettings.Networks.calico.IPAddress}}",
                id,
            ],
        )?;
        let mut fields = inspect.split_whitespace();
        let (Some(pid), Some(endpoint), Some(addr)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("docker inspect {id}: unexpected {inspect:?}");
        };
        let netns = format!("{}-t{k}", self.prefix);
        ip(&["netns", "attach", &netns, pid])?;
        // Traffic flows once the plugin has read the labels and felix programmed the endpoint.
        self.wait_programmed(
            h,
            &calico_netlink::workload::host_iface_name(endpoint),
            Duration::from_secs(20),
        )?;
        Ok(Task {
            id: id.to_owned(),
            app: app.to_owned(),
            host: h.name.clone(),
            netns,
            ip: addr.to_owned(),
            labels: labels.clone(),
            container_id: id.to_owned(),
            docker: true,
        })
    }
}

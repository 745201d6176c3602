//! Local Docker images, built without a registry: `FROM scratch` plus a host binary and every
//! shared library `ldd` lists for it, copied at their absolute paths (the dynamic loader too).
//!
//! - the `bff` image: the given `bff` binary at `/bff`, `/etc/nsswitch.conf` (`hosts: files dns`,
//!   so the issuer name Docker writes into `/etc/hosts` resolves), the host's CA certificates,
//!   listening on `0.0.0.0:8080`;
//! - the `redis` image: the host's `redis-server` (the Debian package, found on PATH), listening
//!   on `0.0.0.0:6379` without protected mode, data in `/data`. Persistence is chosen by the
//!   arguments a container starts with (see [`redis_args`]), which the stock `redis:7` image
//!   accepts as well.
//!
//! The docker backend builds them itself ([`ensure_images`]) when they are missing, and rebuilds
//! the `bff` image when its binary changed: the image carries a label naming the binary it was
//! built from (path, size and modification time), so a fresh `cargo build` is never shadowed by
//! an old image. Only images named under `bff-local/` are built; any other name (a registry's
//! `redis:7`, a team's own `bff` image) must already be present.
//!
//! Everything goes through the `docker` CLI (`docker build`, `docker image inspect`, `docker
//! info`): it negotiates the API version with any daemon, and the builder needs it anyway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::process::on_path;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("docker is not available: {0}")]
    DockerUnavailable(String),
    #[error("bff binary {0} not found: build it with `cargo build -p bff`")]
    BffMissing(PathBuf),
    #[error("redis-server not found on PATH: install it (apt-get install redis-server)")]
    RedisServerMissing,
    #[error("ldd {binary}: {reason}")]
    Ldd { binary: PathBuf, reason: String },
    #[error("cannot prepare the build context for {image}: {reason}")]
    Context { image: String, reason: String },
    #[error("docker build {image} failed: {output}")]
    Build { image: String, output: String },
    #[error("image {0} not found locally and not one bffctl builds (`bff-local/…`): build or load it first")]
    NotFound(String),
}

/// Image names for the Docker backend; a user with a registry can use `redis:7`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    pub bff: String,
    pub redis: String,
}

impl Default for Images {
    fn default() -> Self {
        Images { bff: "bff-local/bff:latest".into(), redis: "bff-local/redis:latest".into() }
    }
}

/// Images under this name are built here; others are only used.
pub const LOCAL_PREFIX: &str = "bff-local/";
/// The label naming the binary a local `bff` image was built from.
pub const SOURCE_LABEL: &str = "bff-local.source";

/// Where the `bff` image listens; nodes publish this port.
pub const BFF_PORT: u16 = 8080;
/// The CA certificates `bff` loads (Debian's path, where rustls-native-certs looks first).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the `redis` image listens.
pub const REDIS_PORT: u16 = 6379;

/// The arguments a Redis container starts with (appended to the image's entrypoint): an
/// append-only file synced on every write when `persistent`, else no persistence at all (not even
/// the snapshot Redis would write at shutdown by default).
pub fn redis_args(persistent: bool) -> Vec<String> {
    let args: &[&str] = if persistent {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--save", "", "--appendonly", "no"]
    };
    args.iter().map(|a| a.to_string()).collect()
}

/// What [`ensure_images`] did to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageAction {
    /// Present and current.
    Kept,
    /// Built, and why (`not found locally`, `older than …`).
    Built(String),
}

/// Makes sure the images a docker run needs exist and the `bff` image holds `bff_binary`:
/// builds what is missing or stale (local names only, see the module docs). `notice` hears one
/// line before each build. Builds within one process take turns.
pub async fn ensure_images(
    images: &Images,
    bff_binary: Option<&Path>,
    needs_redis: bool,
    notice: &(dyn Fn(&str) + Send + Sync),
) -> Result<Vec<(String, ImageAction)>, ImageError> {
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = BUILDING.lock().await;
    if !docker_available().await {
        return Err(ImageError::DockerUnavailable("no daemon answers `docker info`".into()));
    }
    let mut done = Vec::new();
    let bff_action = match (images.bff.starts_with(LOCAL_PREFIX), bff_binary) {
        (true, Some(binary)) => {
            let wanted = source_stamp(binary)?;
            let why = match image_label(&images.bff, SOURCE_LABEL).await {
                None => Some("not found locally".to_owned()),
                Some(found) if found != wanted => Some(format!("older than {}", binary.display())),
                Some(_) => None,
            };
            match why {
                Some(why) => {
                    notice(&format!("building image {} from {} ({why})", images.bff, binary.display()));
                    build_bff_image(binary, &images.bff).await?;
                    ImageAction::Built(why)
                }
                None => ImageAction::Kept,
            }
        }
        _ => {
            require_images(&[&images.bff]).await?;
            ImageAction::Kept
        }
    };
    done.push((images.bff.clone(), bff_action));
    if needs_redis {
        let action = if image_exists(&images.redis).await {
            ImageAction::Kept
        } else if images.redis.starts_with(LOCAL_PREFIX) {
            let redis_server = on_path("redis-server").ok_or(ImageError::RedisServerMissing)?;
            notice(&format!("building image {} from {} (not found locally)", images.redis, redis_server.display()));
            build_redis_image(&redis_server, &images.redis).await?;
            ImageAction::Built("not found locally".into())
        } else {
            return Err(ImageError::NotFound(images.redis.clone()));
        };
        done.push((images.redis.clone(), action));
    }
    Ok(done)
}

/// What identifies a binary for [`SOURCE_LABEL`]: its absolute path, size and modification time.
fn source_stamp(binary: &Path) -> Result<String, ImageError> {
    let meta = std::fs::metadata(binary).map_err(|_| ImageError::BffMissing(binary.to_owned()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
    Ok(format!("{}:{}:{modified}", path.display(), meta.len()))
}

/// The value of `label` on a local image; `None` when the image (or the label) is absent.
async fn image_label(image: &str, label: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    let value = docker(&["image", "inspect", "--format", &format, image], Duration::from_secs(10)).await.ok()?;
    let value = value.trim();
    (!value.is_empty() && value != "<no value>").then(|| value.to_owned())
}

/// Builds both images: `bff` from `bff_binary`, `redis` from the `redis-server` on PATH.
/// `progress` hears one line per step.
pub async fn build_images(bff_binary: &Path, images: &Images, progress: impl Fn(&str)) -> Result<(), ImageError> {
    if !docker_available().await {
        return Err(ImageError::DockerUnavailable("no daemon answers `docker info`".into()));
    }
    progress(&format!("building {} from {}", images.bff, bff_binary.display()));
    build_bff_image(bff_binary, &images.bff).await?;
    let redis_server = on_path("redis-server").ok_or(ImageError::RedisServerMissing)?;
    progress(&format!("building {} from {}", images.redis, redis_server.display()));
    build_redis_image(&redis_server, &images.redis).await?;
    Ok(())
}

/// The `bff` image: `/bff`, its libraries, `/etc/nsswitch.conf`.
pub async fn build_bff_image(bff_binary: &Path, name: &str) -> Result<(), ImageError> {
    if !bff_binary.is_file() {
        return Err(ImageError::BffMissing(bff_binary.to_owned()));
    }
    let source = source_stamp(bff_binary)?;
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         LABEL {SOURCE_LABEL}=\"{source}\"\n\
         ENV BFF_LISTEN=0.0.0.0:{BFF_PORT}\n\
         EXPOSE {BFF_PORT}\n\
         ENTRYPOINT [\"/bff\"]\n"
    );
    let mut files = vec![
        (PathBuf::from("/bff"), FileSource::Copy(bff_binary.to_owned())),
        (PathBuf::from("/etc/nsswitch.conf"), FileSource::Text("hosts: files dns\n".into())),
    ];
    // The HTTP client loads the system's CA certificates at start-up and refuses to start
    // without any, even though the mock issuer speaks plain HTTP.
    let ca_bundle = Path::new(CA_BUNDLE);
    if !ca_bundle.is_file() {
        return Err(ImageError::Context {
            image: name.to_owned(),
            reason: format!("{CA_BUNDLE} not found: install it (apt-get install ca-certificates)"),
        });
    }
    files.push((ca_bundle.to_owned(), FileSource::Copy(ca_bundle.to_owned())));
    build_scratch_image(name, bff_binary, files, &dockerfile).await
}

/// The `bffctl` image (for `bffctl issuer` in a deployment): `/bffctl`, its libraries, CA
/// certificates and name resolution through `/etc/hosts` and DNS.
pub async fn build_bffctl_image(bffctl_binary: &Path, name: &str) -> Result<(), ImageError> {
    let dockerfile = "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/bffctl\"]\n";
    let mut files = vec![
        (PathBuf::from("/bffctl"), FileSource::Copy(bffctl_binary.to_owned())),
        (PathBuf::from("/etc/nsswitch.conf"), FileSource::Text("hosts: files dns\n".into())),
        (PathBuf::from("/tmp"), FileSource::Directory),
    ];
    let ca_bundle = Path::new(CA_BUNDLE);
    if ca_bundle.is_file() {
        files.push((ca_bundle.to_owned(), FileSource::Copy(ca_bundle.to_owned())));
    }
    build_scratch_image(name, bffctl_binary, files, dockerfile).await
}

/// The `nginx` image (a real load balancer in front of the deployment): the host's nginx, its
/// libraries, the users it switches to, writable temporary paths. The configuration comes from a
/// mount at `/etc/nginx/nginx.conf`; errors go to stderr.
pub async fn build_nginx_image(name: &str) -> Result<(), ImageError> {
    let nginx = on_path("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .ok_or_else(|| ImageError::Context {
            image: name.to_owned(),
            reason: "nginx not found: install it (apt-get install nginx-light)".into(),
        })?;
    let path = nginx.display();
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nEXPOSE 80\nENTRYPOINT [\"{path}\", \"-e\", \"stderr\", \"-g\", \"daemon off;\"]\n"
    );
    let files = vec![
        (nginx.clone(), FileSource::Copy(nginx.clone())),
        (
            PathBuf::from("/etc/nsswitch.conf"),
            FileSource::Text("hosts: files dns\npasswd: files\ngroup: files\n".into()),
        ),
        (
            PathBuf::from("/etc/passwd"),
            FileSource::Text(
                "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n".into(),
            ),
        ),
        (PathBuf::from("/etc/group"), FileSource::Text("root:x:0:\nnogroup:x:65534:\n".into())),
        (PathBuf::from("/tmp"), FileSource::Directory),
        (PathBuf::from("/var/log/nginx"), FileSource::Directory),
        (PathBuf::from("/var/lib/nginx"), FileSource::Directory),
        (PathBuf::from("/run"), FileSource::Directory),
    ];
    build_scratch_image(name, &nginx, files, &dockerfile).await
}

/// The `redis` image: `redis-server` at its host path, its libraries, an empty `/data`.
pub async fn build_redis_image(redis_server: &Path, name: &str) -> Result<(), ImageError> {
    let path = redis_server.display();
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         EXPOSE {REDIS_PORT}\n\
         ENTRYPOINT [\"{path}\", \"--bind\", \"0.0.0.0\", \"--port\", \"{REDIS_PORT}\", \
         \"--protected-mode\", \"no\", \"--dir\", \"/data\"]\n"
    );
    let files = vec![
        (redis_server.to_owned(), FileSource::Copy(redis_server.to_owned())),
        (PathBuf::from("/data"), FileSource::Directory),
    ];
    build_scratch_image(name, redis_server, files, &dockerfile).await
}

/// True when the image is present locally (never pulls).
pub async fn image_exists(name: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", name], Duration::from_secs(10)).await.is_ok()
}

/// `Ok` when every image is present locally, else the one-line error that says how to build it.
pub async fn require_images(names: &[&str]) -> Result<(), ImageError> {
    for name in names {
        if !image_exists(name).await {
            return Err(ImageError::NotFound((*name).to_owned()));
        }
    }
    Ok(())
}

/// True when the `docker` CLI is installed and a daemon answers it within a few seconds.
pub async fn docker_available() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"], Duration::from_secs(5)).await.is_ok()
}

/// Runs `docker ARGS` with a bound; its stdout on success, else what went wrong.
pub(crate) async fn docker(args: &[&str], bound: Duration) -> Result<String, String> {
    let mut command = Command::new("docker");
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(bound, command.output()).await {
        Err(_) => return Err(format!("`docker {}` did not answer within {bound:?}", args.join(" "))),
        Ok(Err(e)) => return Err(format!("cannot run docker: {e}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(last_lines(&String::from_utf8_lossy(&output.stderr), 5))
    }
}

enum FileSource {
    /// A host file (symbolic links followed).
    Copy(PathBuf),
    Text(String),
    Directory,
}

/// Lays out `rootfs/` in a temporary context directory (the binary's libraries plus `files`)
/// and runs `docker build` on it.
async fn build_scratch_image(
    name: &str,
    binary: &Path,
    mut files: Vec<(PathBuf, FileSource)>,
    dockerfile: &str,
) -> Result<(), ImageError> {
    for library in shared_libraries(binary).await? {
        files.push((library.clone(), FileSource::Copy(library)));
    }
    let context_error = |reason: String| ImageError::Context { image: name.to_owned(), reason };
    let context = tempfile::Builder::new()
        .prefix("bff-image-")
        .tempdir()
        .map_err(|e| context_error(format!("temporary directory: {e}")))?;
    let rootfs = context.path().join("rootfs");
    for (target, source) in &files {
        let dest = rootfs.join(target.strip_prefix("/").unwrap_or(target));
        let written = match source {
            FileSource::Directory => std::fs::create_dir_all(&dest),
            FileSource::Copy(from) => create_parent(&dest).and_then(|()| std::fs::copy(from, &dest).map(drop)),
            FileSource::Text(text) => create_parent(&dest).and_then(|()| std::fs::write(&dest, text)),
        };
        written.map_err(|e| context_error(format!("{}: {e}", target.display())))?;
    }
    std::fs::write(context.path().join("Dockerfile"), dockerfile)
        .map_err(|e| context_error(format!("Dockerfile: {e}")))?;

    let output = Command::new("docker")
        .args(["build", "--quiet", "--tag", name])
        .arg(context.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ImageError::DockerUnavailable(format!("cannot run docker: {e}")))?;
    if !output.status.success() {
        return Err(ImageError::Build {
            image: name.to_owned(),
            output: last_lines(&String::from_utf8_lossy(&output.stderr), 10),
        });
    }
    Ok(())
}

fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// The absolute paths `ldd` resolves for `binary`, the dynamic loader included; none for a
/// static binary.
async fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let ldd_error = |reason: String| ImageError::Ldd { binary: binary.to_owned(), reason };
    let output = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ldd_error(format!("cannot run ldd: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if format!("{stdout}{stderr}").contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(ldd_error(last_lines(&stderr, 3)));
    }
    parse_ldd(&stdout).map_err(ldd_error)
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2 (0x…)`
/// give a path; `linux-vdso.so.1 (0x…)` lives in the kernel; `=> not found` is an error.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let resolved = match line.split_once("=>") {
            Some((library, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} not found", library.trim()));
                }
                target
            }
            None => line,
        };
        if let Some(path) = resolved.split_whitespace().next().filter(|p| p.starts_with('/')) {
            let path = PathBuf::from(path);
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    Ok(paths)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_absolute_paths_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007fe7)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fe7)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007fe7)\n";
        let paths = parse_ldd(output).unwrap();
        assert_eq!(
            paths,
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let output = "\tlibfoo.so.1 => not found\n";
        assert_eq!(parse_ldd(output).unwrap_err(), "libfoo.so.1 not found");
    }

    #[test]
    fn redis_persistence_is_chosen_by_arguments() {
        assert!(redis_args(true).join(" ").contains("--appendonly yes --appendfsync always"));
        assert_eq!(redis_args(false), ["--save", "", "--appendonly", "no"]);
    }
}

//! The check, before runc runs, that a container's program exists in its root filesystem: a
//! missing or non-executable program is the deployer's to fix, so it is reported at once
//! (trying again cannot help) and without runc's words, which name host paths.
//!
//! Paths are resolved inside the root (`openat2` with `RESOLVE_IN_ROOT`), so an image's
//! absolute symbolic links (`/bin/sh -> /bin/busybox`) point into the image, never at the host.
//! A name without a slash is looked up in the container's `PATH`, as runc does.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Why the program cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Nothing at that path (or in any `PATH` directory).
    NotFound,
    /// Something is there, but not an executable file.
    NotExecutable(&'static str),
}

/// Check that `program` (argv\[0\]) names an executable file in the root filesystem `root`,
/// resolving a relative path against `cwd` and a bare name through `PATH` in `env`.
pub(crate) fn check(root: &Path, program: &str, env: &[String], cwd: &str) -> Result<(), Missing> {
    let root = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|_| Missing::NotFound)?;
    if program.contains('/') {
        let path = if program.starts_with('/') { program.to_owned() } else { format!("{cwd}/{program}") };
        return executable(&root, &path);
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or_default();
    let mut found = Err(Missing::NotFound);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        match executable(&root, &format!("{dir}/{program}")) {
            Ok(()) => return Ok(()),
            // A directory further on may still have it; a file that is there but cannot run
            // is what runc would complain about if none does.
            Err(e @ Missing::NotExecutable(_)) if found == Err(Missing::NotFound) => found = Err(e),
            Err(_) => {}
        }
    }
    found
}

/// Whether `path`, resolved inside `root`, is an executable regular file.
fn executable(root: &impl rustix::fd::AsFd, path: &str) -> Result<(), Missing> {
    let flags = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(root, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), flags)
        .map_err(|_| Missing::NotFound)?;
    let meta = std::fs::File::from(fd).metadata().map_err(|_| Missing::NotFound)?;
    if meta.is_dir() {
        return Err(Missing::NotExecutable("a directory"));
    }
    if !meta.is_file() {
        return Err(Missing::NotExecutable("not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Missing::NotExecutable("not executable (no x permission)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("busybox"), "").unwrap();
        std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Absolute, as in real images: resolved inside the root, not on the host.
        symlink("/bin/busybox", bin.join("sh")).unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        std::fs::create_dir(dir.path().join("srv")).unwrap();
        symlink("../bin/busybox", dir.path().join("srv/app")).unwrap();
        symlink("/etc/passwd", bin.join("host")).unwrap();
        dir
    }

    const PATH: &str = "PATH=/usr/bin:/bin";

    #[test]
    fn programs_are_found_by_path_name_and_relative_path_inside_the_root() {
        let img = image();
        let env = [PATH.to_owned()];
        assert_eq!(check(img.path(), "/bin/sh", &env, "/"), Ok(()));
        assert_eq!(check(img.path(), "sh", &env, "/"), Ok(()));
        assert_eq!(check(img.path(), "./app", &env, "/srv"), Ok(()));
        assert_eq!(check(img.path(), "/bin/../../bin/sh", &env, "/"), Ok(()));
    }

    #[test]
    fn missing_programs_and_non_executables_are_told_apart() {
        let img = image();
        let env = [PATH.to_owned()];
        assert_eq!(check(img.path(), "/bin/nosuchprog", &env, "/"), Err(Missing::NotFound));
        assert_eq!(check(img.path(), "nosuchprog", &env, "/"), Err(Missing::NotFound));
        assert_eq!(check(img.path(), "sh", &[], "/"), Err(Missing::NotFound), "no PATH, no lookup");
        assert!(matches!(check(img.path(), "/bin/data", &env, "/"), Err(Missing::NotExecutable(_))));
        assert!(matches!(check(img.path(), "data", &env, "/"), Err(Missing::NotExecutable(_))));
        assert!(matches!(check(img.path(), "/bin", &env, "/"), Err(Missing::NotExecutable(_))));
        // A link to a host file resolves inside the image, where there is none.
        assert_eq!(check(img.path(), "/bin/host", &env, "/"), Err(Missing::NotFound));
    }
}

//! The reference files a drift job may read: regular files inside one directory (by default
//! `<data-dir>/references`), named by a path relative to it or by an absolute path inside it.
//! A path is resolved with every link followed (`canonicalize`) before it is checked, so a
//! link in the directory that points out of it is refused like any path outside. Every refusal
//! is one [`Error::Reference`] with the same message, whatever the reason (missing, outside,
//! a link out, a directory, the directory itself missing), so that a caller who may create
//! jobs cannot use them to learn which paths exist on the server.
//!
//! The check is made when a job is created and again each time a run opens the file, so a file
//! moved or replaced by a link afterwards is refused too. The directory itself is trusted:
//! whoever may write into it chooses what jobs can read.

use crate::Error;
use std::path::{Path, PathBuf};

/// The directory reference files must be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceFiles {
    dir: PathBuf,
}

impl ReferenceFiles {
    /// Reference files must be inside `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReferenceFiles { dir: dir.into() }
    }

    /// The directory, as configured.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file `path` names, with every link resolved: `path` relative to the directory, or
    /// absolute. Anything but a regular file inside the directory is refused with one message.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, Error> {
        let refused = || Error::Reference { path: path.display().to_string() };
        let root = self.dir.canonicalize().map_err(|_| refused())?;
        let real = root.join(path).canonicalize().map_err(|_| refused())?;
        if !real.starts_with(&root) || !real.metadata().map_err(|_| refused())?.is_file() {
            return Err(refused());
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_inside_the_directory_resolve_and_nothing_else_does() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("references");
        std::fs::create_dir_all(dir.join("2026")).unwrap();
        std::fs::write(dir.join("ref.csv"), "x\n1\n").unwrap();
        std::fs::write(dir.join("2026/nov.csv"), "x\n1\n").unwrap();
        std::fs::write(top.path().join("secret.csv"), "password\nhunter2\n").unwrap();
        let files = ReferenceFiles::new(&dir);
        let real = dir.canonicalize().unwrap();

        assert_eq!(files.resolve(Path::new("ref.csv")).unwrap(), real.join("ref.csv"));
        assert_eq!(files.resolve(Path::new("2026/nov.csv")).unwrap(), real.join("2026/nov.csv"));
        assert_eq!(files.resolve(&dir.join("ref.csv")).unwrap(), real.join("ref.csv"), "absolute, inside");
        assert_eq!(files.resolve(Path::new("2026/../ref.csv")).unwrap(), real.join("ref.csv"));

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(top.path().join("secret.csv"), dir.join("link-out.csv")).unwrap();
            std::os::unix::fs::symlink(dir.join("ref.csv"), dir.join("link-in.csv")).unwrap();
            assert_eq!(files.resolve(Path::new("link-in.csv")).unwrap(), real.join("ref.csv"));
        }

        // Missing, outside, escaping, a link out, a directory, a system file: one message each.
        let refusals: Vec<String> = [
            PathBuf::from("missing.csv"),
            top.path().join("secret.csv"),
            PathBuf::from("../secret.csv"),
            PathBuf::from("../missing.csv"),
            PathBuf::from("link-out.csv"),
            PathBuf::from("2026"),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("/no/such/file"),
        ]
        .iter()
        .map(|p| {
            let e = files.resolve(p).unwrap_err();
            assert!(matches!(e, Error::Reference { .. }), "{e:?}");
            e.to_string().replace(&p.display().to_string(), "PATH")
        })
        .collect();
        assert!(refusals.windows(2).all(|w| w[0] == w[1]), "{refusals:#?}");
        assert!(refusals[0].contains("references directory"), "{}", refusals[0]);

        // With no directory at all, nothing resolves, with the same message.
        let none = ReferenceFiles::new(top.path().join("absent"));
        let e = none.resolve(Path::new("ref.csv")).unwrap_err().to_string().replace("ref.csv", "PATH");
        assert_eq!(e, refusals[0]);
    }
}

//! The private files of one run (`run.files`): written before the command starts, removed when
//! the run ends.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::Rng;

/// A folder (mode 0700) holding one file (mode 0600) per variable; dropping it removes them all.
pub struct JobFiles {
    folder: Option<PathBuf>,
    paths: Vec<(String, PathBuf)>,
}

impl JobFiles {
    /// Writes `files` into a new folder under `root` (made, 0700, if missing). No files, no
    /// folder. A partly written folder is removed before the error is returned.
    pub fn write(root: &Path, files: &[(String, Bytes)]) -> io::Result<JobFiles> {
        let mut written = JobFiles {
            folder: None,
            paths: Vec::new(),
        };
        if files.is_empty() {
            return Ok(written);
        }
        DirBuilder::new().recursive(true).mode(0o700).create(root)?;
        let suffix: u64 = rand::thread_rng().gen();
        let folder = root.join(format!("job-{suffix:016x}"));
        // `create` fails if the folder exists: nobody else's folder is ever reused.
        DirBuilder::new().mode(0o700).create(&folder)?;
        written.folder = Some(folder.clone());
        // Named by their place, not by their variable: a variable's name never becomes a path.
        for (index, (name, content)) in files.iter().enumerate() {
            let path = folder.join(format!("file-{index}"));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(content)?;
            written.paths.push((name.clone(), path));
        }
        Ok(written)
    }

    /// Each file's variable and path, for the command's environment.
    pub fn variables(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.paths
            .iter()
            .map(|(name, path)| (name.clone(), path.display().to_string()))
    }
}

impl Drop for JobFiles {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder {
            if let Err(error) = std::fs::remove_dir_all(folder) {
                tracing::warn!(folder = %folder.display(), %error, "cannot remove a job's files");
            }
        }
    }
}

/// Removes what a crash left in `root`: folders of runs that never got to clean up. Called at
/// start, before any job runs. A folder that cannot be removed (a command left something there
/// it cannot be taken from) is said in the log and left: it does not keep the server from
/// starting.
pub fn remove_leftovers(root: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(root) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("job-") {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(folder = %entry.path().display(), %error, "cannot remove the files a crashed run left");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_removed_with_their_folder() {
        let root = tempfile::tempdir().unwrap();
        let written = JobFiles::write(
            root.path(),
            &[("KEY".into(), Bytes::from_static(b"\x00secret"))],
        )
        .unwrap();
        let variables: Vec<(String, String)> = written.variables().collect();
        let path = PathBuf::from(&variables[0].1);
        assert_eq!(variables[0].0, "KEY");
        assert_eq!(std::fs::read(&path).unwrap(), b"\x00secret");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        drop(written);
        assert!(!path.parent().unwrap().exists());
        let none = JobFiles::write(&root.path().join("unused"), &[]).unwrap();
        assert_eq!(none.variables().count(), 0);
        assert!(!root.path().join("unused").exists(), "no files, no folder");
    }

    #[test]
    fn a_variables_name_never_becomes_a_path() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("files");
        let names = ["../../escaped", "/tmp/absolute", "a/b"];
        let files: Vec<(String, Bytes)> = names
            .iter()
            .map(|name| (name.to_string(), Bytes::from_static(b"x")))
            .collect();
        let written = JobFiles::write(&inside, &files).unwrap();
        for (name, path) in written.variables() {
            let path = PathBuf::from(path);
            assert!(path.starts_with(&inside), "{name}: {}", path.display());
            assert_eq!(std::fs::read(&path).unwrap(), b"x");
        }
        assert!(!root.path().join("escaped").exists());
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let left = JobFiles::write(root.path(), &[("A".into(), Bytes::from_static(b"a"))]).unwrap();
        let folder = PathBuf::from(&left.variables().next().unwrap().1)
            .parent()
            .unwrap()
            .to_path_buf();
        std::mem::forget(left);
        std::fs::write(root.path().join("other"), "kept").unwrap();
        remove_leftovers(root.path()).unwrap();
        assert!(!folder.exists());
        assert!(root.path().join("other").exists());
        remove_leftovers(&root.path().join("missing")).expect("a missing root is fine");
    }
}

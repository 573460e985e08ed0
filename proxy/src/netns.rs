//! Network namespace handles and the one primitive everything else builds on:
//! run a short closure with the calling thread inside another namespace.
//!
//! A socket belongs to the namespace its creating thread was in when it called
//! `socket(2)`, and keeps it for life. So listeners (in client namespaces) and
//! upstream sockets (in target namespaces) are created by entering the
//! namespace on the current thread, creating the socket, and coming back. The
//! window is a few syscalls long and nothing else runs on the thread meanwhile.

use std::{
    fs::File,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use nix::sched::{setns, CloneFlags};

/// Identifies a namespace the agent manages, for the life of the process.
pub type NsId = u32;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace file could not be opened (usually: it does not exist).
    #[error("network namespace {name:?} ({path}): {source}")]
    Open {
        /// Namespace name.
        name: String,
        /// Path that was opened.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a network namespace.
    #[error("{path} is not a network namespace")]
    NotNetns {
        /// Path that was opened.
        path: PathBuf,
    },
    /// Entering the namespace failed.
    #[error("entering network namespace {name:?}: {source}")]
    Enter {
        /// Namespace name.
        name: String,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// The current thread's namespace could not be opened.
    #[error("opening the current thread's network namespace: {0}")]
    Current(#[source] std::io::Error),
}

/// An open network namespace. Holding the fd keeps the namespace alive even if
/// its `/run/netns` entry is removed; [`NetNs::still_named`] tells whether it is.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
    file: File,
    inode: u64,
}

impl NetNs {
    /// Opens the namespace `name` under `dir` (normally `/run/netns`).
    pub fn open(dir: &Path, name: &str) -> Result<Self, Error> {
        let path = dir.join(name);
        let open_err = |source| Error::Open {
            name: name.to_owned(),
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let inode = inode_of(&file).map_err(open_err)?;
        let ns = Self {
            name: name.to_owned(),
            path: path.clone(),
            file,
            inode,
        };
        if !ns.is_netns() {
            return Err(Error::NotNetns { path });
        }
        Ok(ns)
    }

    /// The namespace name (its file name under the netns directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while `/run/netns/NAME` still refers to this very namespace.
    /// `ip netns del` removes the name; the namespace may linger while
    /// processes or our own fds hold it, but it is gone for the operator.
    pub fn still_named(&self) -> bool {
        File::open(&self.path)
            .and_then(|f| inode_of(&f))
            .is_ok_and(|inode| inode == self.inode)
    }

    fn is_netns(&self) -> bool {
        // NS_GET_NSTYPE would be precise; comparing with our own namespace's
        // device is enough to tell nsfs files from regular files.
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata("/proc/self/ns/net")) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => false,
        }
    }

    /// Runs `f` with the current thread inside this namespace, then returns to
    /// the thread's original namespace.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        let original = File::open("/proc/thread-self/ns/net").map_err(Error::Current)?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| Error::Enter {
            name: self.name.clone(),
            source,
        })?;
        let out = f();
        if let Err(e) = setns(original.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A thread stuck in a tenant's namespace would silently create
            // later sockets there: better to stop the process than to mix VPCs.
            tracing::error!(error = %e, namespace = %self.name, "cannot return to the original network namespace; aborting");
            std::process::abort();
        }
        Ok(out)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn inode_of(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_is_named_in_error() {
        let err = NetNs::open(Path::new("/run/netns"), "latticed-no-such-ns").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("latticed-no-such-ns"), "{msg}");
    }

    #[test]
    fn regular_file_is_not_a_namespace() {
        let dir = std::env::temp_dir();
        let name = format!("latticed-notns-{}", std::process::id());
        std::fs::write(dir.join(&name), b"x").unwrap();
        let err = NetNs::open(&dir, &name).unwrap_err();
        std::fs::remove_file(dir.join(&name)).unwrap();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    /// Entering needs CAP_SYS_ADMIN: `privileged_` keeps it out of the
    /// root-free tier (tests/README.md).
    #[test]
    fn privileged_own_namespace_can_be_entered() {
        let ns = NetNs::open(Path::new("/proc/self/ns"), "net").unwrap();
        let v = ns.enter(|| 7).unwrap();
        assert_eq!(v, 7);
        assert!(ns.still_named());
    }
}

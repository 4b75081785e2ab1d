//! The file behind a pool: creating it with its memory reserved, opening and validating it,
//! mapping it, and naming it.
//!
//! A pool named `NAME` is the file `DIR/shmpool.NAME`. It is built under a temporary name and linked
//! into place complete, so whoever opens the name sees a whole, initialised segment. Creation reserves
//! the memory with `posix_fallocate`: a full tmpfs (Docker's 64 MiB `/dev/shm`) fails there with a
//! clear error instead of a SIGBUS on first touch.

use super::layout::{Geometry, Header};
use crate::liveness;
use crate::{Error, Result};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// File-name prefix of every pool segment.
pub(crate) const PREFIX: &str = "shmpool.";
/// File-name prefix of a segment being created.
pub(crate) const TEMP_PREFIX: &str = ".shmpool.";

/// Checks a pool name (a leading `/`, as in POSIX shm names, is accepted and dropped).
pub(crate) fn check_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 200
        && !bare.starts_with('.')
        && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(bare)
    } else {
        Err(Error::invalid(format!("pool name {name:?}: use 1 to 200 of A-Z a-z 0-9 . _ - (not starting with '.')")))
    }
}

pub(crate) fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{name}"))
}

pub(crate) fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::invalid("path contains a NUL byte"))
}

pub(crate) fn open_fd(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    loop {
        // SAFETY: `c` is a valid C string; open has no other memory effects.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, u64)> {
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev as u64, st.st_ino as u64, st.st_size as u64))
}

fn free_bytes(dir: &Path) -> u64 {
    let Ok(c) = cpath(dir) else { return 0 };
    // SAFETY: statvfs is plain data; `c` is a valid path.
    unsafe {
        let mut sv: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut sv) == 0 {
            sv.f_bavail as u64 * sv.f_frsize as u64
        } else {
            0
        }
    }
}

/// An open, mapped pool file.
pub(crate) struct Segment {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    pub path: PathBuf,
    id: (u64, u64),
}

// SAFETY: the mapping is shared memory accessed only through atomics and raw pointers; the fd and
// pointer may move between threads.
unsafe impl Send for Segment {}
// SAFETY: as above; nothing in Segment is mutated after construction.
unsafe impl Sync for Segment {}

impl Segment {
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The file's current size (`None` if `fstat` fails).
    pub fn len_on_disk(&self) -> Option<u64> {
        file_id(self.fd()).ok().map(|(_, _, size)| size)
    }

    /// A new open file description of the same file, for a peer's own liveness lock.
    pub fn reopen(&self) -> Result<OwnedFd> {
        #[cfg(target_os = "linux")]
        let path = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        #[cfg(not(target_os = "linux"))]
        let path = self.path.clone();
        // /proc/self/fd/N is a magic link: follow it (O_NOFOLLOW would refuse).
        let c = cpath(&path)?;
        // SAFETY: valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os(format!("reopening {}", self.path.display())));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (dev, ino, _) = file_id(fd.as_fd()).map_err(|e| Error::io("fstat", e))?;
        if (dev, ino) != self.id {
            return Err(Error::Closed);
        }
        Ok(fd)
    }

    /// Creates the file for `geometry`, lets `init` fill it, then links it in under `path` with
    /// this handle as its creator, replacing a stale pool (one whose handles are all gone).
    pub fn create(
        path: &Path,
        name: &str,
        geometry: &Geometry,
        permissions: u32,
        init: impl Fn(*mut u8),
    ) -> Result<Segment> {
        // `gc` may collect our temporary file in the instant between its creation and our attach
        // lock: then start again with a new one.
        for _ in 0..8 {
            if let Some(segment) = Segment::try_create(path, name, geometry, permissions, &init)? {
                return Ok(segment);
            }
        }
        Err(Error::io(format!("creating {}", path.display()), io::Error::from(io::ErrorKind::Interrupted)))
    }

    fn try_create(
        path: &Path,
        name: &str,
        geometry: &Geometry,
        permissions: u32,
        init: &impl Fn(*mut u8),
    ) -> Result<Option<Segment>> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!("{TEMP_PREFIX}{name}.{}.{nanos}.tmp", std::process::id()));
        let fd = open_fd(&temp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, permissions)
            .map_err(|e| Error::io(format!("creating {}", temp.display()), e))?;
        let cleanup = TempFile(&temp);
        // In use from the start, so `gc` leaves it alone.
        if !liveness::try_lock(fd.as_fd(), liveness::ATTACH_BYTE, false).map_err(|e| Error::io("locking", e))? {
            return Ok(None);
        }
        // SAFETY: `fd` is open; fchmod sets the exact mode regardless of the umask.
        unsafe { libc::fchmod(fd.as_raw_fd(), permissions as libc::mode_t) };
        reserve(fd.as_fd(), geometry.total, dir)?;
        let segment = Segment::map(fd, path.to_path_buf(), geometry.total)?;
        init(segment.base);
        if !segment.claim_creator()? {
            return Err(Error::corrupted("creator lock of a new pool file is held"));
        }
        match segment.link_into_place(&temp, path, name) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            other => other?,
        }
        drop(cleanup);
        Ok(Some(segment))
    }

    /// Takes the creator's lock of this pool; `false`: a live creator holds it.
    pub fn claim_creator(&self) -> Result<bool> {
        liveness::try_lock(self.fd(), liveness::CREATOR_BYTE, true).map_err(|e| Error::io("locking pool file", e))
    }

    /// Whether another handle (of any process) holds the creator's lock.
    pub fn creator_held(&self) -> bool {
        liveness::is_held(self.fd(), liveness::CREATOR_BYTE).unwrap_or(true)
    }

    fn link_into_place(&self, temp: &Path, path: &Path, name: &str) -> Result<()> {
        let (ctemp, cpath_) = (cpath(temp)?, cpath(path)?);
        // SAFETY: both valid C strings.
        if unsafe { libc::link(ctemp.as_ptr(), cpath_.as_ptr()) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::io(format!("linking {}", path.display()), err));
        }
        if in_use(path)? {
            return Err(Error::AlreadyExists { name: name.to_string() });
        }
        // Stale: replace it atomically. SAFETY: valid C strings.
        if unsafe { libc::rename(ctemp.as_ptr(), cpath_.as_ptr()) } != 0 {
            return Err(Error::last_os(format!("replacing stale {}", path.display())));
        }
        // Another creator may have replaced the same stale pool at the same moment: the name is
        // ours only if it now names our file.
        match open_fd(path, libc::O_RDONLY, 0).and_then(|fd| file_id(fd.as_fd())) {
            Ok((dev, ino, _)) if (dev, ino) == self.id => Ok(()),
            _ => Err(Error::AlreadyExists { name: name.to_string() }),
        }
    }

    /// Opens and validates the pool file at `path`.
    pub fn open(path: &Path, name: &str) -> Result<(Segment, Geometry)> {
        let fd = open_fd(path, libc::O_RDWR, 0).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name: name.to_string(), path: path.to_path_buf() },
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        let (_, _, size) = file_id(fd.as_fd()).map_err(|e| Error::io("fstat", e))?;
        if size < size_of::<Header>() as u64 {
            return Err(Error::corrupted(format!("{} is {size} bytes, too small for a pool", path.display())));
        }
        let segment = Segment::map(fd, path.to_path_buf(), size)?;
        // SAFETY: the mapping is at least one header long and page aligned.
        let header = unsafe { &*(segment.base as *const Header) };
        let geometry = Geometry::read_header(header, size)?;
        segment.attach(name)?;
        Ok((segment, geometry))
    }

    fn map(fd: OwnedFd, path: PathBuf, len: u64) -> Result<Segment> {
        let len = usize::try_from(len).map_err(|_| Error::invalid("segment too large"))?;
        let (dev, ino, _) = file_id(fd.as_fd()).map_err(|e| Error::io("fstat", e))?;
        // SAFETY: mapping a file we hold open; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mapping {}", path.display())));
        }
        Ok(Segment { fd, base: base.cast(), len, path, id: (dev, ino) })
    }

    /// Marks this handle as a live user of the pool. The attach byte is held exclusively only by
    /// [`remove_if_unused`], for the moment it takes to unlink the file: wait that out, and report
    /// a file that went away as not found.
    fn attach(&self, name: &str) -> Result<()> {
        for _ in 0..1000 {
            match liveness::try_lock(self.fd(), liveness::ATTACH_BYTE, false) {
                Ok(true) => return Ok(()),
                Ok(false) if !self.is_linked() => {
                    return Err(Error::NotFound { name: name.to_string(), path: self.path.clone() })
                }
                Ok(false) => std::thread::sleep(std::time::Duration::from_micros(200)),
                Err(e) => return Err(Error::io("locking pool file", e)),
            }
        }
        Err(Error::corrupted("attach lock is held exclusively"))
    }

    /// Whether the file at `self.path` is still this segment.
    pub fn is_linked(&self) -> bool {
        match open_fd(&self.path, libc::O_RDONLY, 0).and_then(|fd| file_id(fd.as_fd())) {
            Ok((dev, ino, _)) => (dev, ino) == self.id,
            Err(_) => false,
        }
    }

    pub fn unlink(&self) {
        if self.is_linked() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; no reference into it outlives the Segment
        // (every View and buffer holds an Arc that keeps it alive).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Removes the temporary file if creation fails half-way.
struct TempFile<'a>(&'a Path);

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Reserves `total` bytes for the file, reporting a too-small file system clearly.
pub(crate) fn reserve(fd: BorrowedFd<'_>, total: u64, dir: &Path) -> Result<()> {
    let size = libc::off_t::try_from(total).map_err(|_| Error::invalid("pool too large"))?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `fd` is open for writing.
        let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, size) };
        match r {
            0 => return Ok(()),
            libc::ENOSPC | libc::EFBIG => {
                return Err(Error::InsufficientSpace {
                    path: dir.to_path_buf(),
                    needed: total,
                    available: free_bytes(dir),
                })
            }
            // File systems without fallocate: size the file and hope (as POSIX shm does).
            libc::EOPNOTSUPP | libc::EINVAL => {}
            e => return Err(Error::io("reserving pool memory", io::Error::from_raw_os_error(e))),
        }
    }
    if free_bytes(dir) < total {
        return Err(Error::InsufficientSpace { path: dir.to_path_buf(), needed: total, available: free_bytes(dir) });
    }
    // SAFETY: `fd` is open for writing.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
        return Err(Error::last_os("sizing pool file"));
    }
    Ok(())
}

/// Removes the pool file at `path` if no process has it open as a pool. Returns whether the name
/// is free now. The attach byte is held exclusively meanwhile, so nobody can attach to the file
/// between the check and the unlink.
pub(crate) fn remove_if_unused(path: &Path) -> Result<bool> {
    let fd = match open_fd(path, libc::O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    if !liveness::try_lock(fd.as_fd(), liveness::ATTACH_BYTE, true).map_err(|e| Error::io("testing lock", e))? {
        return Ok(false);
    }
    let ours = file_id(fd.as_fd()).map_err(|e| Error::io("fstat", e))?;
    // Unlink only if the name still names the file we locked (not one linked in since).
    match open_fd(path, libc::O_RDONLY, 0).and_then(|now| file_id(now.as_fd())) {
        Ok(now) if (now.0, now.1) == (ours.0, ours.1) => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        },
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
    }
}

/// Whether any process has the pool file at `path` open as a pool (holds its attach lock).
pub(crate) fn in_use(path: &Path) -> Result<bool> {
    let fd = match open_fd(path, libc::O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    liveness::is_held(fd.as_fd(), liveness::ATTACH_BYTE).map_err(|e| Error::io("testing lock", e))
}

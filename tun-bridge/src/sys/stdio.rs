//! The standard streams as files: the device and inode of stderr, which
//! systemd compares with `JOURNAL_STREAM` to say stderr is the journal.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// `(st_dev, st_ino)` of the file behind stderr (`fstat(2)` on a duplicate
/// of fd 2).
pub fn stderr_identity() -> io::Result<(u64, u64)> {
    let fd = io::stderr().as_fd().try_clone_to_owned()?;
    let meta = std::fs::File::from(fd).metadata()?;
    Ok((meta.dev(), meta.ino()))
}

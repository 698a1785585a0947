//! Virtual disk files: NOCOW, preallocated, written from raw images.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`).
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
/// `FS_IOC_SETFLAGS` (`_IOW('f', 2, long)`).
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
/// `FS_NOCOW_FL`: what `chattr +C` sets.
const FS_NOCOW_FL: libc::c_int = 0x0080_0000;

/// Mark an empty file NOCOW (btrfs honours it only before the file has data).
pub fn set_nocow(file: &File, path: &Path) -> Result<()> {
    let mut flags: libc::c_int = 0;
    // SAFETY: the fd is open for the duration of the call and `flags` is a valid int the kernel writes to
    // (the inode flags ioctls move an int despite the `long` in their number).
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_GETFLAGS,
            &mut flags as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(Error::io("reading the inode flags of", path)(
            std::io::Error::last_os_error(),
        ));
    }
    flags |= FS_NOCOW_FL;
    // SAFETY: as above; the kernel reads the int.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_SETFLAGS,
            &flags as *const libc::c_int,
        )
    };
    if rc != 0 {
        return Err(Error::io("setting NOCOW on", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether a file carries the NOCOW flag.
pub fn is_nocow(path: &Path) -> Result<bool> {
    let file = File::open(path).map_err(Error::io("opening", path))?;
    let mut flags: libc::c_int = 0;
    // SAFETY: as in `set_nocow`.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_GETFLAGS,
            &mut flags as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(Error::io("reading the inode flags of", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(flags & FS_NOCOW_FL != 0)
}

/// Allocate `size` bytes for the file (growing its size to `size`).
pub fn allocate(file: &File, path: &Path, size: u64) -> Result<()> {
    let len =
        i64::try_from(size).map_err(|_| Error::InvalidInput(format!("size {size} is too big")))?;
    nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), 0, len)
        .map_err(Error::sys("allocating", path))
}

/// Create a new NOCOW file of `size` preallocated bytes at `path` (which must not exist) and sync it.
pub fn create(path: &Path, size: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("creating", path))?;
    set_nocow(&file, path)?;
    allocate(&file, path, size)?;
    file.sync_all().map_err(Error::io("syncing", path))
}

/// Sync a directory so renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

const CHUNK: usize = 1 << 20;

/// Copy the image at `image` to the start of the disk file `disk`, skipping all-zero chunks (the disk is
/// preallocated and reads as zeros there). `after_first_write` runs once after the first chunk is written.
pub fn write_image(image: &Path, disk: &Path, mut after_first_write: impl FnMut()) -> Result<()> {
    let mut src = File::open(image).map_err(Error::io("opening image", image))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(Error::io("opening", disk))?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset: u64 = 0;
    let mut wrote_any = false;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            let n = src
                .read(&mut buf[filled..])
                .map_err(Error::io("reading image", image))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        if chunk.iter().any(|b| *b != 0) {
            dst.seek(SeekFrom::Start(offset))
                .map_err(Error::io("seeking in", disk))?;
            dst.write_all(chunk).map_err(Error::io("writing", disk))?;
            if !wrote_any {
                wrote_any = true;
                dst.sync_data().map_err(Error::io("syncing", disk))?;
                after_first_write();
            }
        }
        offset += filled as u64;
        if filled < CHUNK {
            break;
        }
    }
    dst.sync_all().map_err(Error::io("syncing", disk))
}

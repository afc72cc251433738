//! The rollback file on disk: a write-ahead journal of a move. Each write
//! into the target is recorded as [`Pending`] before it is made and as
//! created/replaced once the API server answered; a source is recorded as
//! deleted before its delete. Every save is atomic and durable (temporary
//! file in the same directory, fsync, rename, fsync of the directory), so a
//! move killed at any instant leaves a file that covers all it wrote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::rollback::{Pending, Replaced, RollbackFile};
use super::MigrateError;

/// The largest rollback file read (bytes): a move of thousands of objects
/// fits; a file larger than this is not one `migrate` wrote.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads and parses a rollback file, refusing one over [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> Result<RollbackFile, MigrateError> {
    let read_err = |source| MigrateError::ReadRollbackFile {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(MigrateError::RollbackFileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    RollbackFile::parse(&text).map_err(|source| MigrateError::BadRollbackFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The rollback file of a move under way.
pub struct Journal {
    path: PathBuf,
    file: RollbackFile,
}

impl Journal {
    /// Writes the empty record of the move before its first write.
    pub fn start(path: &Path, from: &str, to: &str) -> Result<Journal, MigrateError> {
        let journal = Journal {
            path: path.to_path_buf(),
            file: RollbackFile::new(from, to),
        };
        journal.save()?;
        eprintln!("rollback file: {}", path.display());
        Ok(journal)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a write about to be made into the target: `desired`, over
    /// `before` (`None`: there is no object of that name).
    pub fn pending(&mut self, desired: &Value, before: Option<&Value>) -> Result<(), MigrateError> {
        self.file.pending = vec![Pending {
            desired: desired.clone(),
            before: before.cloned(),
        }];
        self.save()
    }

    /// The pending write created `obj` (as the API server returned it).
    pub fn created(&mut self, obj: Value) -> Result<(), MigrateError> {
        self.file.pending.clear();
        self.file.created.push(obj);
        self.save()
    }

    /// The pending write replaced `before` with `after` (as returned).
    pub fn replaced(&mut self, before: Value, after: Value) -> Result<(), MigrateError> {
        self.file.pending.clear();
        self.file.replaced.push(Replaced { before, after });
        self.save()
    }

    /// Records a source about to be deleted (as stored now).
    pub fn deleting(&mut self, obj: Value) -> Result<(), MigrateError> {
        self.file.deleted.push(obj);
        self.save()
    }

    /// Writes the file: a temporary file next to it, fsync, rename over
    /// it, fsync of the directory (so that the rename survives a crash).
    fn save(&self) -> Result<(), MigrateError> {
        let text = self
            .file
            .to_yaml()
            .map_err(MigrateError::EncodeRollbackFile)?;
        self.write_atomically(text.as_bytes())
            .map_err(|source| MigrateError::WriteRollbackFile {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("yaml.partial");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }

    /// `e`, with the pointer to this file that undoes what was written.
    pub fn after_writes(&self, e: MigrateError) -> MigrateError {
        MigrateError::AfterWrites {
            source: Box::new(e),
            rollback_file: self.path.clone(),
        }
    }
}

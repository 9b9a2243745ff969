//! Stores written before round 18 are `redb` databases (IMPI -> the same JSON record the log
//! keeps). Opening one reads its records once; the store then writes them as a log over the
//! same path (atomic rename), so the database is read at most until that rename.

use std::path::Path;

use akagate_slowpath::registrar::SecretBuf;
use redb::{Database, ReadableTable, TableDefinition};

/// The table earlier versions wrote: IMPI key -> JSON of the store's record.
pub(super) const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("registrations");

/// The first bytes of a `redb` file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Whether `head` (a file's first bytes) is a `redb` database's.
pub(super) fn is_redb(head: &[u8]) -> bool {
    head.starts_with(&REDB_MAGIC)
}

/// The records of the `redb` store at `path`, each value in a buffer zeroized on drop (it
/// holds keys); `Ok((records, unreadable))` counts entries that could not be read. An error:
/// the database itself cannot be opened or read.
pub(super) fn read_redb(path: &Path) -> Result<(Vec<(String, SecretBuf)>, usize), String> {
    let db = Database::open(path).map_err(|e| e.to_string())?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e.to_string()),
    };
    let mut records = Vec::new();
    let mut unreadable = 0;
    for item in table.iter().map_err(|e| e.to_string())? {
        let Ok((k, v)) = item else {
            unreadable += 1;
            continue;
        };
        let mut value = SecretBuf::with_capacity(v.value().len());
        value.extend_from_slice(v.value());
        records.push((k.value().to_string(), value));
    }
    Ok((records, unreadable))
}

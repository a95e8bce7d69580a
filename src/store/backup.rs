//! Online backups of a SQLite database: a consistent copy taken while the server serves.

use std::path::Path;

use sea_orm::{ConnectionTrait as _, DbBackend};

use super::{Store, db_error};
use crate::error::{Error, Result};

impl Store {
    /// Writes a consistent copy of the SQLite database to `path` with `VACUUM INTO`.
    ///
    /// The copy is made inside one read transaction, so it holds exactly the transactions
    /// committed before it started; in WAL mode writers carry on meanwhile. `path` must not
    /// exist. PostgreSQL databases are backed up with `pg_dump` instead (docs/backups.md).
    pub async fn vacuum_into(&self, path: &Path) -> Result<()> {
        if self.backend() != DbBackend::Sqlite {
            return Err(Error::internal(
                "VACUUM INTO backs up SQLite only; use pg_dump for PostgreSQL",
            ));
        }
        let target = path
            .to_str()
            .ok_or_else(|| Error::internal("the backup path is not valid UTF-8"))?
            .to_owned();
        self.connection()
            .execute_raw(super::statement(
                DbBackend::Sqlite,
                "VACUUM INTO $1",
                [target.into()],
            ))
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

//! `[store]`: where the record lives. Unset `url`: the SQLite file in the
//! repository's `.memofab/`, as always. Set to a `postgres://` URL: the
//! shared PostgreSQL record, which daemons on several machines and cockpits
//! anywhere read and write. `--store URL` and `MEMOFAB_STORE_URL` override it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// e.g. `postgres://memofab@db.internal:5432/memofab`. A password in it
    /// never reaches the record, a log line or an error message.
    pub url: Option<String>,
}

impl StoreConfig {
    pub(super) fn problem(&self) -> Option<super::Problem> {
        let url = self.url.as_deref()?;
        (!crate::effects::store::postgres::url::is_postgres(url)).then(|| {
            super::Problem::new(
                &["store", "url"],
                format!(
                    "store.url = {:?}: give a PostgreSQL URL (postgres://user@host:5432/database), or leave it unset for the SQLite file",
                    crate::effects::store::postgres::url::redacted(url)
                ),
            )
        })
    }
}

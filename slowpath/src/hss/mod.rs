//! The embedded HSS: subscribers (IMPI, IMPUs, K, OPc, AMF, SQN) loaded from TOML or CSV, AKA
//! vectors from Milenage, and SQN advances queued as [`PersistRecord`]s for whoever owns the
//! disk (the daemon journals them and reports them durable before a challenge may leave).

mod generate;
mod index;
mod persist;
mod plain;
mod record;
mod store;

pub use generate::{generate_subscribers, render_toml, Plmn};
pub use persist::{
    apply_journal, parse_snapshot, parse_snapshot_document, render_snapshot, PersistRecord,
    PersistTicket, SqnState,
};
pub use record::{parse_csv, parse_toml, parse_toml_document, SubscriberRecord};
pub(crate) use store::has_ascii_uppercase;
pub use store::{Hss, HssError, Identities, Subscriber, SQN_BLOCK};

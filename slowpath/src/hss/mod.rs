//! The embedded HSS: subscribers (IMPI, IMPUs, K, OPc, AMF, SQN) loaded from TOML or CSV, AKA
//! vectors from Milenage, and SQN state persisted durably before a challenge leaves (per
//! challenge, or per group of challenges with [`CommitMode::Deferred`] and [`Hss::commit`]).

mod generate;
mod record;
mod sqn_store;
mod store;

pub use generate::{generate_subscribers, render_toml, Plmn};
pub use record::{parse_csv, parse_toml, SubscriberRecord};
pub use sqn_store::SqnJournal;
pub use store::{CommitMode, Hss, HssError, Subscriber};

//! The storage core of `@cuitty/persist`: one store API (records, kv, blobs, events) over
//! several backends. Nothing here knows about Node; the `node` feature adds the napi binding
//! in `napi/`, which converts values and delegates to [`store::Store`].

pub mod backend;
pub mod chunks;
pub mod clock;
pub mod config;
pub mod error;
pub mod keyspace;
pub mod model;
pub mod p2p;
pub mod postgres;
pub mod query;
pub mod records;
pub mod s3;
pub mod sqlite;
pub mod store;
pub mod validate;
pub mod versions;

#[cfg(feature = "node")]
pub mod napi;

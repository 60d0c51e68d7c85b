//! The pgoutput logical replication message decoder (bytes from the database's walsender).
#![no_main]

use bytes::Bytes;
use crier_postgres::pgoutput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pgoutput::decode(&Bytes::copy_from_slice(data));
});

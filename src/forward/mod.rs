//! The forwarder: sends every accepted span onward over OTLP (issue 5).

pub mod wal;

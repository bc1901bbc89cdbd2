//! Chorus tooling that the storage node doesn't need: `chorus bench` and its drivers for
//! Chorus, Redis and etcd. The `chorus` binary (in `chorus-node`) wires it in.

pub mod bench;

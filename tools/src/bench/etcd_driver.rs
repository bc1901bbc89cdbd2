//! The etcd driver: the v3 KV API (`/etcdserverpb.KV/Put` and `/etcdserverpb.KV/Range`)
//! over plain gRPC, with hand-declared messages holding only the fields the bench uses
//! (field numbers from etcd's `api/etcdserverpb/rpc.proto` and `mvccpb/kv.proto`; prost
//! skips the fields a struct leaves out).
//!
//! Requests are spread round-robin over connections to every endpoint. A write is a Put,
//! committed once a majority of members has it in its Raft log (etcd has no weaker write),
//! so `--w` does not apply. Reads are linearizable, etcd's default: the member confirms its
//! commit index with the leader (ReadIndex) before answering. `--r one` asks for a
//! serializable read instead, answered from the contacted member's local state.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use chorus_client::Level;
use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use super::driver::{Driver, DriverError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::{key_name, BenchArgs};

const PUT: &str = "/etcdserverpb.KV/Put";
const RANGE: &str = "/etcdserverpb.KV/Range";

/// `etcdserverpb.PutRequest`: key = 1, value = 2 (lease = 3 and the flags are left unset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `etcdserverpb.PutResponse`: only the header is kept.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `etcdserverpb.RangeRequest`: key = 1; serializable = 7. An empty range_end (2) reads
/// the one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `etcdserverpb.RangeResponse`: header = 1, kvs = 2, count = 4.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

/// `etcdserverpb.ResponseHeader`: cluster_id = 1, member_id = 2, revision = 3,
/// raft_term = 4.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `mvccpb.KeyValue`: key = 1, mod_revision = 3, value = 5 (create_revision = 2,
/// version = 4 and lease = 6 are skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(bytes = "bytes", tag = "5")]
    pub value: Bytes,
}

pub struct EtcdDriver {
    channels: Vec<Channel>,
    next: AtomicUsize,
    serializable: bool,
}

impl EtcdDriver {
    pub async fn connect(args: &BenchArgs) -> Result<EtcdDriver, DriverError> {
        if args.endpoints.is_empty() {
            return Err(DriverError::Setup("--driver etcd needs --endpoints".into()));
        }
        let n = args.connection_count().max(args.endpoints.len());
        let mut channels = Vec::with_capacity(n);
        for i in 0..n {
            let endpoint = &args.endpoints[i % args.endpoints.len()];
            let connect_err = |e| DriverError::EtcdConnect {
                endpoint: endpoint.clone(),
                source: Box::new(e),
            };
            let channel = Endpoint::from_shared(format!("http://{endpoint}"))
                .map_err(connect_err)?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(connect_err)?;
            channels.push(channel);
        }
        Ok(EtcdDriver {
            channels,
            next: AtomicUsize::new(0),
            serializable: args.r == Level::One,
        })
    }

    fn client(&self) -> tonic::client::Grpc<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        tonic::client::Grpc::new(self.channels[i].clone())
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, DriverError> {
        let mut grpc = self.client();
        grpc.ready().await.map_err(not_ready)?;
        let res = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(PUT),
                ProstCodec::<PutRequest, PutResponse>::default(),
            )
            .await?;
        Ok(res.into_inner())
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, DriverError> {
        let mut grpc = self.client();
        grpc.ready().await.map_err(not_ready)?;
        let res = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(RANGE),
                ProstCodec::<RangeRequest, RangeResponse>::default(),
            )
            .await?;
        Ok(res.into_inner())
    }
}

fn not_ready(e: tonic::transport::Error) -> DriverError {
    DriverError::Etcd(Box::new(tonic::Status::unavailable(e.to_string())))
}

impl Driver for EtcdDriver {
    async fn read(&self, key: u64) -> Result<bool, DriverError> {
        let res = self
            .range(RangeRequest {
                key: key_name(key).into_bytes(),
                serializable: self.serializable,
            })
            .await?;
        Ok(!res.kvs.is_empty())
    }

    async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        self.put(PutRequest {
            key: key_name(key).into_bytes(),
            value,
        })
        .await?;
        Ok(())
    }

    fn read_level(&self) -> String {
        if self.serializable {
            "serializable".into()
        } else {
            "linearizable".into()
        }
    }

    fn write_level(&self) -> String {
        "raft majority".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn put_request_encodes_key_and_value_as_fields_1_and_2() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: Bytes::from_static(b"vv"),
        };
        let buf = req.encode_to_vec();
        // Field 1, wire type 2 (0x0a), length 1, "k"; field 2, wire type 2 (0x12), length 2.
        assert_eq!(buf, [0x0a, 1, b'k', 0x12, 2, b'v', b'v']);
        assert_eq!(PutRequest::decode(&buf[..]).expect("decode"), req);
    }

    #[test]
    fn range_request_serializable_is_field_7() {
        let req = RangeRequest {
            key: b"user1".to_vec(),
            serializable: true,
        };
        let buf = req.encode_to_vec();
        // Field 7, varint (0x38), value 1, after the key.
        assert_eq!(&buf[buf.len() - 2..], [0x38, 1]);
        assert_eq!(RangeRequest::decode(&buf[..]).expect("decode"), req);
        // The linearizable default sends only the key.
        let lin = RangeRequest {
            key: b"user1".to_vec(),
            serializable: false,
        };
        assert_eq!(lin.encode_to_vec(), [0x0a, 5, b'u', b's', b'e', b'r', b'1']);
    }

    /// A fuller response, as etcd sends it, with fields the driver doesn't declare.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FullKeyValue {
        #[prost(bytes = "vec", tag = "1")]
        key: Vec<u8>,
        #[prost(int64, tag = "2")]
        create_revision: i64,
        #[prost(int64, tag = "3")]
        mod_revision: i64,
        #[prost(int64, tag = "4")]
        version: i64,
        #[prost(bytes = "vec", tag = "5")]
        value: Vec<u8>,
        #[prost(int64, tag = "6")]
        lease: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullRangeResponse {
        #[prost(message, optional, tag = "1")]
        header: Option<ResponseHeader>,
        #[prost(message, repeated, tag = "2")]
        kvs: Vec<FullKeyValue>,
        #[prost(bool, tag = "3")]
        more: bool,
        #[prost(int64, tag = "4")]
        count: i64,
    }

    #[test]
    fn range_response_decodes_and_skips_undeclared_fields() {
        let full = FullRangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: 42,
                raft_term: 3,
            }),
            kvs: vec![FullKeyValue {
                key: b"user1".to_vec(),
                create_revision: 2,
                mod_revision: 40,
                version: 5,
                value: vec![b'x'; 1000],
                lease: 99,
            }],
            more: true,
            count: 1,
        };
        let res = RangeResponse::decode(&full.encode_to_vec()[..]).expect("decode");
        assert_eq!(res.header.as_ref().map(|h| h.revision), Some(42));
        assert_eq!(res.count, 1);
        assert_eq!(res.kvs.len(), 1);
        assert_eq!(res.kvs[0].key, b"user1");
        assert_eq!(res.kvs[0].mod_revision, 40);
        assert_eq!(res.kvs[0].value.len(), 1000);
        // Not found: no kvs.
        let empty = RangeResponse::decode(&[][..]).expect("decode");
        assert!(empty.kvs.is_empty());
    }

    #[test]
    fn put_response_decodes_its_header() {
        let res = PutResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
        };
        let buf = res.encode_to_vec();
        assert_eq!(PutResponse::decode(&buf[..]).expect("decode"), res);
    }
}

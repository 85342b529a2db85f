//! Every response decoder (and request decoder): the first two bytes pick the API and version.
//! Whatever decodes must re-encode and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use cohort_protocol::ApiKey;
use cohort_protocol::messages::{RequestKind, ResponseKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let implemented: Vec<ApiKey> = ApiKey::ALL
        .iter()
        .copied()
        .filter(|k| ResponseKind::decode(*k, 0, &mut Bytes::new()).is_some())
        .collect();
    let key = implemented[usize::from(data[0]) % implemented.len()];
    let range = key.versions();
    let version = range.min + (i16::from(data[1]) % (range.max - range.min + 1));
    let input = Bytes::copy_from_slice(&data[2..]);

    if let Some(Ok(resp)) = ResponseKind::decode(key, version, &mut input.clone()) {
        let mut out = BytesMut::new();
        resp.encode(&mut out, version).expect("a decoded response re-encodes");
        let again = ResponseKind::decode(key, version, &mut out.freeze()).unwrap().expect("re-decodes");
        assert_eq!(again, resp);
    }
    if let Some(Ok(req)) = RequestKind::decode(key, version, &mut input.clone()) {
        let mut out = BytesMut::new();
        req.encode(&mut out, version).expect("a decoded request re-encodes");
        let again = RequestKind::decode(key, version, &mut out.freeze()).unwrap().expect("re-decodes");
        assert_eq!(again, req);
    }
});

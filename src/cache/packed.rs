//! JSON kept lz4-compressed against a dictionary learnt from the first
//! pieces that were mostly new. Teams' ServerConfigs (and what is built from
//! them) are copies of a few stock ones with other images, so a copy packs
//! into a few hundred bytes instead of a few KiB or a 60 KiB value tree.

use std::sync::Arc;

/// The most a dictionary holds: lz4 only looks back 64 KiB.
const DICTIONARY_MAX_BYTES: usize = 60 * 1024;
/// How many pieces a dictionary learns from: each one makes a new version,
/// which the pieces packed against the old one keep alive.
const DICTIONARY_MAX_PARTS: usize = 8;

/// A packed piece that does not decompress (memory corruption or a bug:
/// every piece was compressed by this process).
#[derive(Debug, thiserror::Error)]
#[error("packed JSON is corrupt: {0}")]
pub struct CorruptPack(#[source] lz4_flex::block::DecompressError);

/// One piece of JSON, packed.
pub struct Packed {
    /// lz4 block (length-prefixed).
    body: Box<[u8]>,
    /// The dictionary `body` was compressed against.
    dict: Arc<[u8]>,
}

impl Packed {
    /// The JSON again.
    pub fn unpack(&self) -> Result<Vec<u8>, CorruptPack> {
        lz4_flex::block::decompress_size_prepended_with_dict(&self.body, &self.dict)
            .map_err(CorruptPack)
    }

    /// Bytes held by this piece (the shared dictionary not counted).
    pub fn len(&self) -> usize {
        self.body.len()
    }
}

/// A compression dictionary: the first pieces that compressed worse than
/// 1:16 against it, concatenated.
#[derive(Default)]
pub struct Dictionary {
    bytes: Arc<[u8]>,
    parts: usize,
}

impl Dictionary {
    /// Packs `json` against the dictionary, then learns from it if it was
    /// mostly new and there is room.
    pub fn pack(&mut self, json: &[u8]) -> Packed {
        let body = lz4_flex::block::compress_prepend_size_with_dict(json, &self.bytes);
        let packed = Packed {
            body: body.into_boxed_slice(),
            dict: self.bytes.clone(),
        };
        self.learn(json, packed.len());
        packed
    }

    fn learn(&mut self, json: &[u8], compressed: usize) {
        let novel = compressed * 16 > json.len();
        if novel
            && self.parts < DICTIONARY_MAX_PARTS
            && self.bytes.len() + json.len() <= DICTIONARY_MAX_BYTES
        {
            self.bytes = [&self.bytes[..], json].concat().into();
            self.parts += 1;
        }
    }

    /// How many pieces the dictionary learnt from.
    #[cfg(test)]
    pub fn parts(&self) -> usize {
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_unpack_to_what_was_packed_and_copies_pack_small() {
        let mut d = Dictionary::default();
        // a few KiB that do not compress much on their own, and one image
        let piece = |image: &str| {
            let env: Vec<_> = (0..100u64)
                .map(|i| {
                    let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    serde_json::json!({"name": format!("V{v:x}"), "value": format!("{:x}", v >> 7)})
                })
                .collect();
            serde_json::to_vec(&serde_json::json!({
                "containers": [{"name": "server", "image": image, "env": env}],
            }))
            .expect("json")
        };
        let first = piece("docker.io/seldonio/mlserver:1.6.1");
        let copy = piece("registry.team-a.example/mlserver:1.6.1-team");
        let (p1, p2) = (d.pack(&first), d.pack(&copy));
        assert_eq!(p1.unpack().expect("unpack"), first);
        assert_eq!(p2.unpack().expect("unpack"), copy);
        assert_eq!(d.parts(), 1, "the copy was not novel");
        assert!(p2.len() * 16 < copy.len(), "{} of {}", p2.len(), copy.len());
    }

    #[test]
    fn the_dictionary_is_bounded() {
        let mut d = Dictionary::default();
        for i in 0..100u8 {
            // incompressible and distinct: always novel
            let json: Vec<u8> = (0..20_000u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i)
                .collect();
            d.learn(&json, json.len());
            assert!(d.bytes.len() <= DICTIONARY_MAX_BYTES && d.parts <= DICTIONARY_MAX_PARTS);
        }
        assert_eq!(d.parts, DICTIONARY_MAX_BYTES / 20_000);
        // well-compressed pieces are not learnt
        let mut d = Dictionary::default();
        d.learn(&[b'x'; 1000], 50);
        assert_eq!((d.parts, d.bytes.len()), (0, 0));
    }
}

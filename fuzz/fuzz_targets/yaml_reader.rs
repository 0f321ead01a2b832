//! `config::yaml`, the streaming YAML reader, against serde_norway over arbitrary text: where both
//! take the text, the values are equal; the document read in two passes (`split`, then its
//! `hooks` items one at a time) is the document read whole; neither may panic. A text the reader
//! leaves to serde_norway or finds too large is not given to serde_norway (its aliases could take
//! all the memory there is).
#![no_main]

use hookrunner::config::yaml::{self, ErrorKind};
use libfuzzer_sys::fuzz_target;
use serde_norway::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = yaml::from_str(text);
    if let Err(error) = &found {
        if matches!(error.kind, ErrorKind::TooLarge | ErrorKind::Unsupported) {
            return;
        }
    }
    let expected = serde_norway::from_str::<Value>(text);
    if let (Ok(found), Ok(expected)) = (&found, &expected) {
        assert_eq!(found, expected, "{text:?}");
    }
    let Ok(whole) = found else {
        return;
    };
    let mut split = yaml::split(text).expect("the whole document was read");
    let mut items = Vec::new();
    split
        .for_each_hook(|index, item| {
            assert_eq!(index, items.len());
            items.push(item);
        })
        .expect("the items were read once already");
    let mut rebuilt = split.document.clone();
    if split.streamed {
        rebuilt["hooks"] = Value::Sequence(items);
    }
    assert_eq!(rebuilt, whole, "{text:?}");
});

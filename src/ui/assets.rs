//! The page's one stylesheet and one script, built into the binary. Their names carry a hash of
//! their content, so a browser may keep them for a year and still sees a new build's at once.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// One asset: its hashed file name, content type and text.
pub struct Asset {
    pub name: String,
    pub content_type: &'static str,
    pub body: &'static str,
}

fn asset(stem: &str, extension: &str, content_type: &'static str, body: &'static str) -> Asset {
    let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
    Asset {
        name: format!("{stem}.{hash}.{extension}"),
        content_type,
        body,
    }
}

pub static STYLESHEET: LazyLock<Asset> =
    LazyLock::new(|| asset("style", "css", "text/css; charset=utf-8", STYLE));
pub static JAVASCRIPT: LazyLock<Asset> =
    LazyLock::new(|| asset("app", "js", "text/javascript; charset=utf-8", SCRIPT));

/// The asset with this file name, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    [&*STYLESHEET, &*JAVASCRIPT]
        .into_iter()
        .find(|asset| asset.name == name)
}

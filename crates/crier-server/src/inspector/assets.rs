//! The inspector page's files, embedded at build time so the binary serves them with no
//! CDN and no files beside it. `crates/crier-server/inspector/` holds them: the page, its
//! script and style (ours), and in `vendor/` the npm builds of uPlot and phoenix.js
//! (see `vendor/README.md` for versions and licences).

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/inspector/", $path)),
        }
    };
}

/// The page itself.
pub(crate) const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// A file the page loads, by its name under `/inspector/assets/`.
pub(crate) fn named(name: &str) -> Option<Asset> {
    Some(match name {
        "app.js" => asset!("app.js", "text/javascript; charset=utf-8"),
        "style.css" => asset!("style.css", "text/css; charset=utf-8"),
        "phoenix.mjs" => asset!("vendor/phoenix.mjs", "text/javascript; charset=utf-8"),
        "uPlot.iife.min.js" => asset!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        "uPlot.min.css" => asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
        _ => return None,
    })
}

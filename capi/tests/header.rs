//! include/densecore.h is what cbindgen generates from src/lib.rs today.

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("../include/densecore.h");
    if std::env::var_os("DENSECORE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/densecore.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/densecore.h is stale: rerun with DENSECORE_BLESS=1 \
         (cargo test -p densecore-capi --test header) and commit it"
    );
}

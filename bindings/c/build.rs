//! Gives `libshmpool.so` its SONAME, so programs link against the ABI version (`libshmpool.so.0`)
//! that `make install` lays down beside the versioned file and the development symlink.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmpool.so.{major}");
    }
}

//! Rebuilds the gateway when a file of the web front end (`assets/`) is added, changed or
//! removed: the files are compiled into the binary (`src/pages.rs`).
fn main() {
    println!("cargo:rerun-if-changed=assets");
}

fn main() {
    let directory = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{directory}/linker.ld");
    // The entry point sits in the boot crate, which nothing else references.
    println!("cargo:rustc-link-arg-bins=--undefined=pvh_start");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}

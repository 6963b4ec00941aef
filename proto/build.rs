//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so building needs no protoc.
//! (The workspace as a whole still does: the `etcd-client` dependency compiles etcd's protos with it;
//! `scripts/lib.sh` `ensure_protoc` installs it.)
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/protocol.proto",
        "proto/comet.proto",
        "proto/logic.proto",
        "proto/queue.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}

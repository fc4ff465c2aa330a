//! Compiles `proto/assent/v1/*.proto` with the pure-Rust `protox` compiler, so
//! building needs nothing but cargo, and writes the descriptor set that server
//! reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/assent/v1/common.proto",
    "proto/assent/v1/relying_party.proto",
    "proto/assent/v1/device.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox does not announce its inputs; without these lines cargo would
    // not rebuild after a .proto edit.
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself; reflection needs it.
    std::fs::write(out_dir.join("assent_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .btree_map(".")
        // The `Connect` RPC would clash with the generated `connect` constructor.
        .build_transport(false)
        // Small initial buffers: idle device streams dominate server memory.
        .codec_path("crate::codec::SmallCodec")
        .compile_fds(fds)?;
    Ok(())
}

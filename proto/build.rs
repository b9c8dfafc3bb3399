//! Compiles the `.proto` files under `protos/` with protox (no system `protoc` needed)
//! and writes their encoded `FileDescriptorSet` next to the generated code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "protos/mesos/v1/mesos.proto",
        "protos/mesos/v1/scheduler/scheduler.proto",
        "protos/mesos/v1/executor/executor.proto",
        "protos/mesos_stateful/v1/task.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut compiler = protox::Compiler::new(["protos"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(files)?;
    let descriptors = compiler.file_descriptor_set();
    // The runtime copy needs no comments or source locations.
    compiler.include_source_info(false);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("file_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}

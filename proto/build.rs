//! Compiles the `.proto` files under `protos/` with protox (no system `protoc` needed).

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
    let descriptors = protox::compile(files, ["protos"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}

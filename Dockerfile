# The scheduler and executor binaries on Debian, linking Debian's RocksDB.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends librocksdb-dev libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends librocksdb7.8 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mesos-stateful /src/target/release/mesos-stateful-executor \
    /src/target/release/devcluster /usr/local/bin/
ENTRYPOINT ["mesos-stateful"]

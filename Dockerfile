# CPU image of minilab (multi-stage). Build: docker build -t minilab .
# Run with a mounted model cache and outputs:
#   docker run --rm -v $PWD/models:/app/models -v $PWD/runs:/app/runs minilab \
#       sensitivity --budget-gb 0.12 --out runs/demo
# CUDA: docker build --build-arg BASE=nvidia/cuda:13.0.0-devel-ubuntu24.04 --build-arg FEATURES=cuda \
#       --build-arg RUNTIME=nvidia/cuda:13.0.0-runtime-ubuntu24.04 -t minilab:cuda .
#   docker run --gpus all ... minilab:cuda bench --device cuda --model synthetic:llama-3.2-3b
ARG BASE=rust:1-bookworm
ARG RUNTIME=debian:bookworm-slim
FROM ${BASE} AS build
ARG FEATURES=""
RUN if ! command -v cargo >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential && \
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; fi
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
# Everything cargo reads: the manifest's [[bench]] needs benches/, build.rs compiles the CUDA kernels
# (src/kernels/cuda/*.cu) with --features cuda, and the unit tests include tests/fixtures.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
COPY examples examples
COPY tests tests
RUN cargo build --release --locked ${FEATURES:+--features $FEATURES} && cp target/release/minilab /minilab

FROM ${RUNTIME}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /minilab /usr/local/bin/minilab
COPY configs configs
COPY eval-data eval-data
COPY scripts scripts
ENTRYPOINT ["minilab"]
CMD ["--help"]

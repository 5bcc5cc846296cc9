# Build: cargo in the official Rust image; run: a slim Debian as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY vault ./vault
COPY views ./views
COPY assets ./assets
RUN cargo build --release --locked && strip target/release/dvault

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/dvault --create-home dvault
COPY --from=build /src/target/release/dvault /usr/local/bin/dvault
USER dvault
WORKDIR /var/lib/dvault
ENTRYPOINT ["dvault"]
CMD ["--help"]

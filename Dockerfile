# PostgreSQL 15 with pg_tenancy installed, plus the tenancy-proxy binary
# (PostgREST v12-compatible HTTP API) in the same image.
#   docker build -t pg_tenancy .
#
# The database (the image's default command, as in the postgres image):
#   docker network create tenancy
#   docker run -d --name db --network tenancy -e POSTGRES_PASSWORD=secret -p 5432:5432 pg_tenancy
# then: CREATE EXTENSION pg_tenancy; and the proxy's roles (see scripts/proxy.sh):
#   CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '...'; CREATE ROLE web_anon NOLOGIN;
#   GRANT web_anon, tenancy_member, tenancy_viewer, tenancy_admin TO authenticator;
#
# The proxy: the same image with tenancy-proxy as the command (the postgres
# entrypoint runs any command other than `postgres` as given), configured with
# PostgREST's environment names:
#   docker run -d --name api --network tenancy -p 3000:3000 \
#     -e PGRST_DB_URI=postgresql://authenticator:...@db:5432/postgres \
#     -e PGRST_DB_SCHEMAS=esg -e PGRST_DB_ANON_ROLE=web_anon \
#     -e PGRST_JWT_SECRET=<at least 32 characters> \
#     -e TENANCY_ADMIN_DB_URI=postgresql://postgres:secret@db:5432/postgres \
#     pg_tenancy tenancy-proxy
#   curl localhost:3000/_tenancy/ready

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common gnupg \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends postgresql-server-dev-15 postgresql-15 libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-pgrx --version 0.18.0 --locked \
 && cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config
WORKDIR /src
COPY . .
RUN cd extension && cargo pgrx package --pg-config /usr/lib/postgresql/15/bin/pg_config --out-dir /out

# The proxy needs no PostgreSQL headers: a plain Rust build of the workspace member
# (every member's sources are copied because cargo loads the whole workspace).
FROM rust:1.95-bookworm AS proxy
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY core core
COPY proxy proxy
COPY extension extension
COPY tests/e2e tests/e2e
RUN cargo build --release --locked -p tenancy-proxy \
 && install -m 755 target/release/tenancy-proxy /usr/local/bin/tenancy-proxy

FROM postgres:15-bookworm
COPY --from=build /out/usr/share/postgresql/15/extension/ /usr/share/postgresql/15/extension/
COPY --from=build /out/usr/lib/postgresql/15/lib/ /usr/lib/postgresql/15/lib/
COPY --from=proxy /usr/local/bin/tenancy-proxy /usr/local/bin/tenancy-proxy
# trusted roots for PGRST_DB_URI=...sslrootcert=system
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Inside a container the proxy must listen on every interface (its default is 127.0.0.1).
ENV PGRST_SERVER_HOST=0.0.0.0 PGRST_SERVER_PORT=3000
EXPOSE 5432 3000

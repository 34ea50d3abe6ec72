# PostgreSQL 15 with pg_tenancy installed.
#   docker build -t pg_tenancy .
#   docker run -e POSTGRES_PASSWORD=secret -p 5432:5432 pg_tenancy
# then: CREATE EXTENSION pg_tenancy;
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

FROM postgres:15-bookworm
COPY --from=build /out/usr/share/postgresql/15/extension/ /usr/share/postgresql/15/extension/
COPY --from=build /out/usr/lib/postgresql/15/lib/ /usr/lib/postgresql/15/lib/

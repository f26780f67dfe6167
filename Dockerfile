# syntax=docker/dockerfile:1
#
# registry-notifier container image: built on Node 24, run on distroless Node 24 (no shell, no package manager)
# as the non-root user 65532. Build: docker build -t registry-notifier .
#
# Stages: `build` compiles TypeScript to dist/ with every dependency; `prod-deps` installs only the runtime
# dependencies in a clean tree (so devDependencies, including the `node` binary package, never reach the image);
# the final stage copies dist/, node_modules/ and package.json (src/version.ts reads the version from it).

ARG NODE_VERSION=24

# --- build: npm ci (with devDependencies) and tsc -p tsconfig.build.json -> dist/ ---------------------------------
# Runs on the build machine's platform: the output is plain JavaScript.
FROM --platform=$BUILDPLATFORM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# Install scripts stay on here: the `node` devDependency's preinstall puts the Node binary `npm run` expects
# into node_modules/.bin.
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- prod-deps: runtime dependencies only, for the target platform ----------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS prod-deps
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# No runtime dependency has an install script; --ignore-scripts keeps it that way.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts

# --- runtime ------------------------------------------------------------------------------------------------------
FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot
LABEL org.opencontainers.image.title="registry-notifier" \
      org.opencontainers.image.description="Delivers CNCF Distribution registry notifications to webhooks defined by NotificationEndpoint resources" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production
# Owned by root and read-only for the process: it never writes to its own files (readOnlyRootFilesystem works).
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 8080: ingest (POST /events); 9090: /metrics, /healthz, /readyz, /endpoints.
EXPOSE 8080 9090
# --max-semi-space-size=1 (MiB): V8's young generation stays at 2 MiB whatever the memory limit. Node already picks
# that in a 512 MiB container, but 16 MiB semi-spaces from 640 MiB on and 64 MiB outside a container, and V8 keeps
# them once a burst (reconciling, delivering) has grown them: 83 MiB of RSS more with 1,000 endpoints in
# bench:endpoints, which starts its process with these flags (README "Many endpoints").
ENTRYPOINT ["/nodejs/bin/node", "--enable-source-maps", "--max-semi-space-size=1", "/app/dist/main.js"]
CMD ["serve"]

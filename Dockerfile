# syntax=docker/dockerfile:1
#
# One image for the three facegate processes. The first argument picks the
# process: gateway (the default), inference-worker or matcher.
#
#   docker build -t facegate .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... facegate gateway
#
# Model weights never enter the image. The inference worker fetches them into
# MODELS_DIR when it starts (infra/docker/entrypoint.sh), so give MODELS_DIR a
# volume and they are fetched once. infra/docker-compose.yml runs the whole stack.

# NOTE: Node 20, the version the project is tested on, left upstream support
# on 2026-04-30. The image stays on it until the tests run on a newer line.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build

# hnswlib-node compiles its native addon with node-gyp at install time.
RUN apt-get update \
  && apt-get install --yes --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*

# Must equal `packageManager` in package.json; infra/test/infra.test.mjs checks it.
ARG PNPM_VERSION=10.34.9
RUN npm install --global pnpm@${PNPM_VERSION}

# As in scripts/setup.mjs, ONNXRUNTIME_NODE_INSTALL=skip stops onnxruntime-node
# from downloading CUDA files. Its CPU binaries ship in the package.
# npm_config_nodedir points node-gyp at the headers of the image's own Node, so
# it downloads none.
ENV CI=1 \
  ONNXRUNTIME_NODE_INSTALL=skip \
  TURBO_TELEMETRY_DISABLED=1 \
  npm_config_nodedir=/usr/local
WORKDIR /src

# pnpm fetch reads only the lockfile and the workspace settings, so this slow
# layer stays cached while no dependency changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
RUN pnpm fetch

# turbo runs straight from node_modules/.bin because `pnpm exec` puts the
# relative ./node_modules/.bin first in PATH. turbo 2.6 then looks for pnpm
# there inside each package folder and fails to spawn it.
COPY . .
# The JPEG decoder addon (scripts/build-native.mjs) runs on any x86-64 CPU, so it
# goes into the image; the AVX2 copy of hnswlib-node would fit only CPUs like the
# build machine's, so it stays out.
RUN pnpm install --frozen-lockfile --offline \
  && ./node_modules/.bin/turbo run build \
  && FACEGATE_NATIVE_SIMD=off node scripts/build-native.mjs

# The production tree goes to a clean folder with the repository layout, because
# @facegate/config finds the root by its pnpm-workspace.yaml and the vision
# package reads models/manifest.json from there. It holds every workspace
# manifest, each project's compiled dist/src (no tests), the model manifest, fetch
# script and calibration files (the int8 embedder is quantized when it loads), and
# production dependencies only, installed from the store that pnpm fetch filled.
RUN set -eu; \
  mkdir -p /out/models /out/infra/docker; \
  cp package.json pnpm-lock.yaml pnpm-workspace.yaml .npmrc /out/; \
  cp models/manifest.json models/fetch.mjs /out/models/; \
  cp -R models/calibration /out/models/; \
  cp infra/docker/entrypoint.sh infra/docker/healthcheck.mjs /out/infra/docker/; \
  chmod 0755 /out/infra/docker/entrypoint.sh; \
  for project in apps/* packages/* benchmarks; do \
    mkdir -p "/out/$project/dist"; \
    cp "$project/package.json" "/out/$project/"; \
    cp -R "$project/dist/src" "/out/$project/dist/src"; \
  done; \
  pnpm install --dir /out --frozen-lockfile --offline --prod; \
  if [ -f node_modules/.facegate-native/jpeg-decoder/build/Release/jpeg_decoder.node ]; then \
    mkdir -p /out/node_modules/.facegate-native/jpeg-decoder/build/Release; \
    cp node_modules/.facegate-native/jpeg-decoder/build/Release/jpeg_decoder.node \
      /out/node_modules/.facegate-native/jpeg-decoder/build/Release/; \
  fi

FROM ${NODE_IMAGE} AS runtime

ENV NODE_ENV=production \
  HOST=0.0.0.0 \
  METRICS_HOST=0.0.0.0 \
  MODELS_DIR=/var/lib/facegate/models \
  INDEX_DIR=/var/lib/facegate/index

# The base image's `node` user (uid 1000) owns only the data folders. The
# application files stay owned by root and read-only to the process. A new named
# volume mounted on a data folder starts with this ownership.
RUN mkdir -p /var/lib/facegate/models /var/lib/facegate/index \
  && chown -R node:node /var/lib/facegate

WORKDIR /app
COPY --from=build /out /app
USER node

EXPOSE 8000 9464
# The probe finds which app runs in the container. It requests GET /health from
# the gateway, or GET /metrics on METRICS_PORT from a worker or the matcher.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "/app/infra/docker/healthcheck.mjs"]
ENTRYPOINT ["/app/infra/docker/entrypoint.sh"]
CMD ["gateway"]

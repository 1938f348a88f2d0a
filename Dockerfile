# tekton-affinity controller image.
#   docker build --build-arg VERSION=$(node -p 'require("./package.json").version') -t REGISTRY/tekton-affinity:TAG .
#   (or `make release`: builds it with buildah and writes release/release.yaml naming it by digest)

# Build: compile TypeScript (tsconfig.build.json: outDir dist, rootDir . -> dist/src/...), then drop
# the dev dependencies so only what the controller runs with is copied on.
FROM node:22-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime: distroless Node.js 22 (a supported LTS; 20 reached end of life in April 2026), no shell or
# package manager, runs as the nonroot user (65532).
FROM gcr.io/distroless/nodejs22-debian12:nonroot
# package.json's version, stamped by `make image` / `make release` (--build-arg VERSION=...).
ARG VERSION=unknown
LABEL org.opencontainers.image.title="tekton-affinity" \
      org.opencontainers.image.version="${VERSION}"
WORKDIR /app
ENV NODE_ENV=production
# package.json marks the compiled files as ES modules ("type": "module").
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 65532:65532
EXPOSE 9443 9090
ENTRYPOINT ["/nodejs/bin/node", "dist/src/cli/main.js", "controller"]

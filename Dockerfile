# tekton-affinity controller image.
#   docker build -t REGISTRY/tekton-affinity:TAG . && docker push REGISTRY/tekton-affinity:TAG

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
WORKDIR /app
ENV NODE_ENV=production
# package.json marks the compiled files as ES modules ("type": "module").
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/nodejs/bin/node", "dist/src/cli/main.js", "controller"]

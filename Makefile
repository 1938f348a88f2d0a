# tekton-affinity. Every target installs what it needs (npm packages; the control-plane binaries are
# built from their Go modules on first use and cached in ~/.cache/tekton-affinity).

.PHONY: demo test test-unit test-e2e build lint generate deps cluster-up cluster-down bench clean image release

deps: node_modules/.package-lock.json
	@bash scripts/ensure-tools.sh

node_modules/.package-lock.json: package.json package-lock.json
	# npm ci installs exactly what the lock pins, as the Dockerfile does. The lock must list every
	# platform's optional binaries: after a dependency change, regenerate it with
	# `npm install --package-lock-only` and no node_modules present, or npm drops the other platforms'.
	npm ci --no-audit --no-fund
	@touch $@

demo: deps
	npx tsx scripts/demo.ts

test: deps
	npm test

test-unit: deps
	npm run test:unit

build: deps
	npm run build

# The project's image from its Dockerfile, with buildah (no Docker daemon); loaded into the real nodes of a
# running local cluster; its reference is the last line printed.
image: deps
	npx tsx scripts/image.ts

# release/release.yaml (the one file operators install: image by digest) and release/monitoring.yaml,
# from deploy/ and the image built as by `make image`. IMAGE_REPOSITORY=ghcr.io/acme/tekton-affinity and
# TEKTON_NAMESPACE=openshift-pipelines choose where the image lives and where Tekton runs.
release: deps
	npx tsx scripts/release.ts

lint: deps
	npm run lint

generate: deps
	npm run generate

cluster-up: deps
	npm run cluster -- up --nodes 3

cluster-down: deps
	npm run cluster -- down

# Benchmarks write bench/results/*.json and print a table; run them on an otherwise idle machine.
bench: deps
	npx tsx bench/placement.ts
	npx tsx bench/migration.ts
	npx tsx bench/admission.ts
	npx tsx bench/webhooks.ts
	npx tsx bench/vs-tekton.ts
	npx tsx bench/scale.ts
	npx tsx bench/reserve.ts
	npx tsx bench/decoys.ts

clean:
	rm -rf dist .cluster

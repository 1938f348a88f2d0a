// Pinned versions of every component the local control plane is built from.
// Bumping one changes its cache key, so the next run rebuilds just that binary.

export const VERSIONS = {
  kubernetes: "v1.35.4",
  etcd: "v3.6.6",
  kwok: "v0.7.0",
  tekton: "v1.15.0",
  /** Cluster DNS for real nodes. v1.15 needs Go 1.26; v1.14 builds with the Go 1.25 the harness asks for. */
  coredns: "v1.14.7",
} as const;

/** The published version of k8s.io/{api,client-go,...} that matches a k8s.io/kubernetes release. */
export function stagingVersion(kubernetesVersion: string): string {
  return kubernetesVersion.replace(/^v1\./, "v0.");
}

// deploy/ against the real apiserver: it applies (server dry-run), its RBAC is enough to run a replica
// through acceptance scenario 2 without a single 403, and it grants exactly what the code calls. The
// bundled Redis requires the password from a Secret the operator creates, and its PDB never blocks a drain.

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type {
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1NetworkPolicy,
  V1PodDisruptionBudget,
  V1Service,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { expect } from "chai";
import { parseAllDocuments, stringify } from "yaml";
import { toKubeYaml } from "../../scripts/release-lib.js";
import { parseQuantity } from "../../src/api/quantity.js";
import { mergePatch } from "../../src/kube/clients.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { kubectlRun, waitFor } from "../cluster/kube.js";
import { ControllerProcess } from "./controller-process.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getPolicy,
  pipelineRun,
  runEvents,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");
const NAMESPACE = "tekton-affinity";
const SERVICE_ACCOUNT = "tekton-affinity";
const WEBHOOKS = "tekton-affinity";

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface Binding extends Obj {
  roleRef: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}

/** The Secret the operator creates before installing (never in git), and its key. */
const REDIS_SECRET = { name: "tekton-affinity-redis", key: "password" };

function envOf(container: V1Container | undefined): Record<string, V1EnvVar> {
  const env = container?.env ?? [];
  const names = env.map((e) => e.name);
  expect(names, `${container?.name}: env names are unique`).to.deep.equal([...new Set(names)]);
  return Object.fromEntries(env.map((e) => [e.name, e]));
}

/** The PodDisruptionBudgets whose selector matches these pod labels. */
function budgetsFor(objects: Obj[], labels: Record<string, string>): V1PodDisruptionBudget[] {
  return (
    objects.filter((o) => o.kind === "PodDisruptionBudget") as unknown as V1PodDisruptionBudget[]
  ).filter((pdb) => {
    const selector = pdb.spec?.selector;
    expect(selector?.matchExpressions, `${pdb.metadata?.name}: matchLabels only`).to.equal(undefined);
    const match = Object.entries(selector?.matchLabels ?? {});
    return match.length > 0 && match.every(([k, v]) => labels[k] === v);
  });
}

async function render(cluster: LocalCluster, dir: string): Promise<Obj[]> {
  const out = await cluster.kubectlRun("kustomize", join(REPO, dir));
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
}

/**
 * `kubectl apply --dry-run=server` of rendered objects. The webhook configurations go under another
 * name: the test cluster's own (URL mode, applied by the shared replica) cannot also take a Service.
 */
async function dryRunApply(cluster: LocalCluster, objects: Obj[]): Promise<string> {
  const renamed = objects.map((o) =>
    /WebhookConfiguration$/.test(o.kind)
      ? { ...o, metadata: { ...o.metadata, name: `${o.metadata.name}-dry-run` } }
      : o,
  );
  const file = join(mkdtempSync(join(tmpdir(), "deploy-")), "objects.yaml");
  writeFileSync(file, toKubeYaml(renamed));
  return cluster.kubectlRun("apply", "-f", file, "--dry-run=server");
}

/**
 * Every permission the controller's ServiceAccount holds, one string per
 * (scope, apiGroup, resource, verb[, resourceNames]): scope is "cluster" or a namespace.
 */
function grants(objects: Obj[]): string[] {
  const roles = new Map(
    objects.map((o) => [`${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`, o]),
  );
  const out: string[] = [];
  for (const b of objects as Binding[]) {
    if (b.kind !== "RoleBinding" && b.kind !== "ClusterRoleBinding") continue;
    const forUs = (b.subjects ?? []).some(
      (s) => s.kind === "ServiceAccount" && s.name === SERVICE_ACCOUNT && s.namespace === NAMESPACE,
    );
    if (!forUs) continue;
    const scope = b.kind === "ClusterRoleBinding" ? "cluster" : b.metadata.namespace!;
    const roleNs = b.roleRef.kind === "Role" ? b.metadata.namespace : "";
    const role = roles.get(`${b.roleRef.kind}/${roleNs}/${b.roleRef.name}`);
    expect(role, `${b.kind} ${b.metadata.name} refers to ${b.roleRef.kind} ${b.roleRef.name} in deploy/`).to
      .exist;
    expect(role, "no aggregated role for the controller").to.not.have.property("aggregationRule");
    for (const r of (role!.rules ?? []) as Rule[]) {
      expect(r.nonResourceURLs, "no non-resource URLs").to.equal(undefined);
      for (const g of r.apiGroups ?? [])
        for (const res of r.resources ?? [])
          for (const v of r.verbs ?? [])
            out.push(
              [
                scope,
                g || "core",
                res,
                v,
                ...(r.resourceNames ? [`[${[...r.resourceNames].sort()}]`] : []),
              ].join(" "),
            );
    }
  }
  return out.sort();
}

/** What the code calls (see the header of deploy/base/rbac.yaml), and nothing else. */
const ALLOWED = [
  "cluster tekton.dev pipelineruns get",
  "cluster tekton.dev pipelineruns list",
  "cluster tekton.dev pipelineruns watch",
  "cluster tekton.dev pipelineruns patch",
  "cluster tekton.dev pipelineruns/finalizers update",
  "cluster tekton.dev pipelineruns/status patch",
  "cluster tekton.dev pipelines get",
  "cluster tekton.dev tasks get",
  "cluster authorization.k8s.io subjectaccessreviews create",
  "cluster core limitranges list",
  "cluster core configmaps get [cluster-resolver-config]",
  "cluster affinity.tekton.dev affinitypolicies get",
  "cluster affinity.tekton.dev affinitypolicies list",
  "cluster affinity.tekton.dev affinitypolicies watch",
  "cluster affinity.tekton.dev affinitypolicies/status patch",
  "cluster affinity.tekton.dev affinitypolicies/status update",
  "cluster apps statefulsets get",
  "cluster apps statefulsets list",
  "cluster apps statefulsets watch",
  "cluster apps statefulsets create",
  "cluster apps statefulsets patch",
  "cluster apps statefulsets delete",
  "cluster core pods get",
  "cluster core pods list",
  "cluster core pods watch",
  "cluster core pods delete",
  "cluster core persistentvolumeclaims get",
  "cluster core persistentvolumeclaims create",
  "cluster core persistentvolumeclaims delete",
  "cluster core persistentvolumeclaims patch",
  "cluster core persistentvolumes get",
  "cluster core serviceaccounts get",
  "cluster scheduling.k8s.io priorityclasses get [tekton-affinity-reservation]",
  "cluster core nodes get",
  "cluster core nodes list",
  "cluster core nodes watch",
  "cluster core namespaces list",
  "cluster core namespaces watch",
  "cluster core events create",
  "cluster core events get",
  "cluster core events list",
  "cluster core events watch",
  "cluster core events patch",
  ...["get", "patch", "update"].flatMap((v) => [
    `cluster admissionregistration.k8s.io mutatingwebhookconfigurations ${v} [${WEBHOOKS}]`,
    `cluster admissionregistration.k8s.io validatingwebhookconfigurations ${v} [${WEBHOOKS}]`,
  ]),
  `${NAMESPACE} core secrets create`,
  `${NAMESPACE} core secrets get [tekton-affinity-webhook-tls]`,
  `${NAMESPACE} core secrets get [tekton-affinity-redis]`,
  `${NAMESPACE} core secrets update [tekton-affinity-webhook-tls]`,
  `${NAMESPACE} coordination.k8s.io leases create`,
  `${NAMESPACE} coordination.k8s.io leases delete`,
  `${NAMESPACE} coordination.k8s.io leases get`,
  `${NAMESPACE} coordination.k8s.io leases list`,
  `${NAMESPACE} coordination.k8s.io leases update`,
  "tekton-pipelines core configmaps get [config-defaults,feature-flags,pipelines-info]",
].sort();

const RBAC_KINDS = new Set([
  "Namespace",
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  // The fence around the controller's service account (controller-fence.yaml): RBAC and the fence together.
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
]);
/** The RBAC and the fence of deploy/, as YAML to apply. */
function rbacAndFence(base: Obj[]): string {
  return base
    .filter((o) => RBAC_KINDS.has(o.kind))
    .map((o) => stringify(o))
    .join("---\n");
}

/** A StatefulSet as the controller writes a placeholder, in `namespace`, changed by `change`. */
function placeholderShaped(
  namespace: string,
  change: (pod: Record<string, unknown>) => void = () => {},
): Obj {
  const labels = {
    "app.kubernetes.io/component": "affinity-placeholder",
    "affinity.tekton.dev/placeholder": "fence",
  };
  const pod: Record<string, unknown> = {
    automountServiceAccountToken: false,
    containers: [
      {
        name: "placeholder",
        image: "registry.k8s.io/pause:3.10",
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
      },
    ],
  };
  change(pod);
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: {
      name: "fence",
      namespace,
      labels,
      ownerReferences: [
        {
          apiVersion: "tekton.dev/v1",
          kind: "PipelineRun",
          name: "r",
          uid: "00000000-0000-0000-0000-000000000001",
        },
      ],
    },
    spec: {
      serviceName: "fence",
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: pod },
    },
  };
}

describe("deploy/ (kustomize install)", function () {
  this.timeout(300_000);
  let base: Obj[];

  before(async () => {
    const { cluster } = await e2e();
    base = await render(cluster, "deploy");
  });

  it("`kubectl apply -k deploy/ --dry-run=server` is accepted by the apiserver", async () => {
    const { cluster } = await e2e();
    const out = await dryRunApply(cluster, base);
    for (const kind of [
      "mutatingwebhookconfiguration.admissionregistration.k8s.io/tekton-affinity-dry-run",
      "validatingwebhookconfiguration.admissionregistration.k8s.io/tekton-affinity-dry-run",
      "deployment.apps/tekton-affinity",
      "service/tekton-affinity-webhook",
      "statefulset.apps/tekton-affinity-redis",
      "poddisruptionbudget.policy/tekton-affinity-redis",
      "validatingadmissionpolicy.admissionregistration.k8s.io/tekton-affinity-controller-fence",
      "validatingadmissionpolicybinding.admissionregistration.k8s.io/tekton-affinity-controller-fence",
    ])
      expect(out).to.include(kind);
  });

  it("`kubectl apply -k deploy/overlays/external-redis --dry-run=server` is accepted by the apiserver", async () => {
    const { cluster } = await e2e();
    const out = await dryRunApply(cluster, await render(cluster, "deploy/overlays/external-redis"));
    expect(out).to.include("deployment.apps/tekton-affinity");
    expect(out).to.not.include("tekton-affinity-redis");
  });

  it("has the pieces an operator expects", () => {
    const find = (kind: string, name: string) =>
      base.find((o) => o.kind === kind && o.metadata.name === name);
    const deployment = find("Deployment", "tekton-affinity") as unknown as V1Deployment;
    expect(deployment.spec?.replicas).to.equal(3);
    const pod = deployment.spec!.template.spec!;
    expect(pod.serviceAccountName).to.equal(SERVICE_ACCOUNT);
    expect(pod.topologySpreadConstraints).to.have.length.at.least(1);
    const container = pod.containers[0]!;
    expect(container.livenessProbe?.httpGet).to.include({ path: "/healthz", scheme: "HTTPS" });
    expect(container.readinessProbe?.httpGet).to.include({ path: "/readyz", scheme: "HTTPS" });
    expect(container.ports?.[0]?.containerPort).to.equal(9443);
    expect(container.securityContext).to.deep.include({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
    });
    expect(container.resources?.requests).to.have.keys("cpu", "memory");
    expect(container.resources?.limits).to.have.property("memory");
    // Memory covers the measured peak of one replica (bench/results/scale.json), with headroom.
    const peak = JSON.parse(readFileSync(resolve(REPO, "bench", "results", "scale.json"), "utf8")).memory
      .controllerPeakRssMb as number;
    expect(parseQuantity(container.resources!.requests!.memory!)).to.be.at.least(peak * 1e6);
    expect(parseQuantity(container.resources!.limits!.memory!)).to.be.at.least(1.5 * peak * 1e6);
    // Metrics on a plain-HTTP port of their own, reachable through the Service and the NetworkPolicy.
    expect(container.ports?.find((p) => p.name === "metrics")?.containerPort).to.equal(9090);
    const env = envOf(container);
    // Every variable carries the prefix (the old names only still work, with a deprecation warning).
    expect(Object.keys(env).filter((name) => !name.startsWith("TEKTON_AFFINITY_"))).to.deep.equal([]);
    expect(env.TEKTON_AFFINITY_NAMESPACE?.valueFrom?.fieldRef?.fieldPath).to.equal("metadata.namespace");
    expect(env.TEKTON_AFFINITY_REPLICA_ID?.valueFrom?.fieldRef?.fieldPath).to.equal("metadata.name");
    expect(env.TEKTON_AFFINITY_REDIS_URL?.value).to.match(/^redis:\/\/tekton-affinity-redis\./);
    // The bundled Redis' password, required (not optional): the controller cannot work its queue without it.
    expect(env.TEKTON_AFFINITY_REDIS_PASSWORD).to.deep.equal({
      name: "TEKTON_AFFINITY_REDIS_PASSWORD",
      valueFrom: { secretKeyRef: REDIS_SECRET },
    });
    // Rollouts never drop capacity, and the grace period outlasts the drain.
    expect(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable).to.equal(0);
    const drain = Number(env.TEKTON_AFFINITY_SHUTDOWN_DRAIN_SECONDS?.value);
    expect(deployment.spec?.template.spec?.terminationGracePeriodSeconds).to.be.above(drain + 30);
    // reserve: LargestTask's reservations: below every pod, preempting none.
    expect(find("PriorityClass", "tekton-affinity-reservation")).to.deep.include({
      value: -1000,
      preemptionPolicy: "Never",
      globalDefault: false,
    });
    const service = find("Service", "tekton-affinity-webhook") as unknown as V1Service;
    expect(service.spec?.ports?.[0]).to.include({ port: 443, targetPort: "https" });
    expect(service.spec?.ports?.[1]).to.include({ name: "metrics", port: 9090, targetPort: "metrics" });
    const policy = find("NetworkPolicy", "tekton-affinity-controller") as unknown as V1NetworkPolicy;
    const ingress = policy.spec?.ingress?.flatMap((rule) => rule.ports?.map((p) => p.port) ?? []);
    expect(ingress).to.have.members([9443, 9090]);
    expect(
      (find("PodDisruptionBudget", "tekton-affinity") as unknown as V1PodDisruptionBudget).spec?.minAvailable,
    ).to.equal(1);
    expect(find("NetworkPolicy", "tekton-affinity-redis")).to.exist;
    expect(find("CustomResourceDefinition", "affinitypolicies.affinity.tekton.dev")).to.exist;
    const aggregated = base.filter((o) => o.kind === "ClusterRole" && o.metadata.labels);
    for (const label of ["admin", "edit", "view"])
      expect(
        aggregated.some(
          (r) => r.metadata.labels?.[`rbac.authorization.k8s.io/aggregate-to-${label}`] === "true",
        ),
        `aggregate-to-${label}`,
      ).to.equal(true);
  });

  it("the bundled Redis requires the password from the operator's Secret, and its PDB never blocks a drain", () => {
    const redis = base.find(
      (o) => o.kind === "StatefulSet" && o.metadata.name === "tekton-affinity-redis",
    ) as unknown as V1StatefulSet;
    expect(redis.spec?.replicas).to.equal(1);
    const container = redis.spec!.template.spec!.containers.find((c) => c.name === "redis");
    const env = envOf(container);
    // The password goes to redis-server on stdin: neither command nor args carries it (or $(...) of it,
    // which Kubernetes would expand onto the command line).
    const commandLine = [...(container?.command ?? []), ...(container?.args ?? [])].join(" ");
    expect(commandLine).to.not.include("--requirepass").and.not.include("$(REDIS_PASSWORD)");
    expect(commandLine)
      .to.match(/redis-server - /)
      .and.match(/\nrequirepass \$REDIS_PASSWORD\n/);
    expect(commandLine, "BullMQ needs noeviction").to.include("--maxmemory-policy noeviction");
    expect(commandLine, "a maxmemory below the container's limit").to.match(/--maxmemory 192mb/);
    for (const name of ["REDIS_PASSWORD", "REDISCLI_AUTH"])
      expect(env[name], name).to.deep.equal({ name, valueFrom: { secretKeyRef: REDIS_SECRET } });
    // The readiness probe authenticates (REDISCLI_AUTH) and checks the answer: redis-cli exits 0 on NOAUTH.
    const probe = (container?.readinessProbe?.exec?.command ?? []).join(" ");
    expect(probe).to.include("redis-cli ping").and.to.include("PONG");
    // No password in git: deploy/ ships no Secret.
    expect(base.filter((o) => o.kind === "Secret")).to.deep.equal([]);

    const podLabels = redis.spec!.template.metadata!.labels!;
    const pdbs = budgetsFor(base, podLabels);
    expect(pdbs.map((p) => p.metadata?.name)).to.deep.equal(["tekton-affinity-redis"]);
    // One replica: minAvailable 1 or maxUnavailable 0 would refuse every eviction forever.
    const spec = pdbs[0]!.spec!;
    expect(spec.minAvailable).to.equal(undefined);
    expect(spec.maxUnavailable).to.equal(redis.spec?.replicas);
    expect(spec.unhealthyPodEvictionPolicy).to.equal("AlwaysAllow");
    // The controller's PDB does not select Redis, nor Redis' the controller.
    const deployment = base.find((o) => o.kind === "Deployment") as unknown as V1Deployment;
    expect(
      budgetsFor(base, deployment.spec!.template.metadata!.labels!).map((p) => p.metadata?.name),
    ).to.deep.equal(["tekton-affinity"]);
  });

  it("overlays/external-redis drops the bundled Redis and reads Redis' URL and password from a Secret", async () => {
    const { cluster } = await e2e();
    const objects = await render(cluster, "deploy/overlays/external-redis");
    expect(objects.filter((o) => o.metadata.name === "tekton-affinity-redis")).to.deep.equal([]);
    expect(objects.filter((o) => o.kind === "StatefulSet" || o.kind === "Secret")).to.deep.equal([]);
    expect(objects.filter((o) => o.kind === "PodDisruptionBudget").map((o) => o.metadata.name)).to.deep.equal(
      ["tekton-affinity"],
    );
    const deployment = objects.find((o) => o.kind === "Deployment") as unknown as V1Deployment;
    // envOf checks that the overlay's entries replaced the base's instead of adding a second one.
    const env = envOf(deployment.spec?.template.spec?.containers[0]);
    expect(env.TEKTON_AFFINITY_REDIS_URL).to.deep.equal({
      name: "TEKTON_AFFINITY_REDIS_URL",
      valueFrom: { secretKeyRef: { name: "tekton-affinity-redis", key: "url" } },
    });
    // Optional here: an external Redis may need no password.
    expect(env.TEKTON_AFFINITY_REDIS_PASSWORD).to.deep.equal({
      name: "TEKTON_AFFINITY_REDIS_PASSWORD",
      valueFrom: { secretKeyRef: { ...REDIS_SECRET, optional: true } },
    });
    expect(grants(objects)).to.deep.equal(grants(base));
    // The image is set once, in base/: the overlay renders the very one deploy/ does.
    const baseDeployment = base.find((o) => o.kind === "Deployment") as unknown as V1Deployment;
    const image = (d: V1Deployment) =>
      [...(d.spec?.template.spec?.initContainers ?? []), ...(d.spec?.template.spec?.containers ?? [])].map(
        (c) => c.image,
      );
    const version = (JSON.parse(readFileSync(resolve(REPO, "package.json"), "utf8")) as { version: string })
      .version;
    expect(image(baseDeployment)).to.deep.equal([`tekton-affinity:${version}`, `tekton-affinity:${version}`]);
    expect(image(deployment)).to.deep.equal(image(baseDeployment));
  });

  it("grants the controller exactly the permissions its API calls need", () => {
    expect(grants(base)).to.deep.equal(ALLOWED);
  });

  it("grants nothing dangerous", () => {
    for (const g of grants(base)) {
      const [scope, , resource, verb] = g.split(" ");
      expect(verb, g).to.not.equal("*");
      expect(resource, g).to.not.equal("*");
      expect(["escalate", "bind", "impersonate"], g).to.not.include(verb);
      expect(resource, g).to.not.equal("pods/exec");
      if (resource === "secrets") expect(scope, g).to.equal(NAMESPACE);
      // A replica that could create webhook configurations could intercept any object in the cluster.
      if (/webhookconfigurations$/.test(resource!)) expect(verb, g).to.not.equal("create");
    }
    const bindings = base.filter((o) => o.kind.endsWith("Binding")) as Binding[];
    for (const b of bindings)
      for (const s of b.subjects ?? [])
        expect(s, `${b.metadata.name} binds only the controller's ServiceAccount`).to.deep.equal({
          kind: "ServiceAccount",
          name: SERVICE_ACCOUNT,
          namespace: NAMESPACE,
        });
  });

  it("fences the controller's service account: what its RBAC allows but its job does not need is refused", async () => {
    const env = await e2e();
    const { cluster } = env;
    await cluster.apply(rbacAndFence(base));
    const kubeconfig = cluster.writeImpersonatingKubeconfig(
      join(env.logDir, "fence-sa.kubeconfig"),
      `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`,
    );
    const ns = await createNamespace(cluster, "fence");
    const asController = (args: string[], input?: string) =>
      kubectlRun(cluster.kubectl, kubeconfig, args, input).then(
        (out) => `allowed: ${out}`,
        (err: Error) => err.message,
      );
    const create = (obj: Obj) => asController(["create", "--dry-run=server", "-f", "-"], JSON.stringify(obj));
    const container = (change: Record<string, unknown>) =>
      placeholderShaped(ns, (pod) => {
        Object.assign((pod.containers as Record<string, unknown>[])[0]!, change);
      });
    // A policy is enforced once the apiserver has loaded it, and an older version of it may still be
    // loaded: wait until its newest rule refuses (a container's command), then until the oldest does.
    const withCommand = container({ command: ["sh", "-c", "cat /etc/shadow"] });
    await waitFor("the fence to be enforced, as it is now", async () =>
      (await create(withCommand)).includes("tekton-affinity-controller-fence"),
    );
    await waitFor("the fence to be enforced", async () =>
      (await create(placeholderShaped("kube-system"))).includes("tekton-affinity-controller-fence"),
    );
    const privileged = placeholderShaped(ns, (pod) => {
      (pod.containers as Record<string, unknown>[])[0]!.securityContext = { privileged: true };
    });
    const hostPath = placeholderShaped(ns, (pod) => {
      pod.volumes = [{ name: "root", hostPath: { path: "/" } }];
    });
    const hostNetwork = placeholderShaped(ns, (pod) => {
      pod.hostNetwork = true;
    });
    const withToken = placeholderShaped(ns, (pod) => {
      pod.automountServiceAccountToken = true;
    });
    const notOwned = {
      ...placeholderShaped(ns),
      metadata: { ...placeholderShaped(ns).metadata, ownerReferences: [] },
    };
    // The image's own entrypoint only: nothing that could run a command or read a tenant's Secrets.
    const withArgs = container({ args: ["--exfiltrate"] });
    const readsSecret = container({
      env: [{ name: "T", valueFrom: { secretKeyRef: { name: "tenant-secret", key: "token" } } }],
    });
    const allSecrets = container({ envFrom: [{ secretRef: { name: "tenant-secret" } }] });
    const execProbe = container({ livenessProbe: { exec: { command: ["sh", "-c", "true"] } } });
    // Linux containers must say they cannot escalate; a Windows pod (which has no such setting) passes.
    const mayEscalate = container({ securityContext: { capabilities: { drop: ["ALL"] } } });
    const onWindows = placeholderShaped(ns, (pod) => {
      pod.os = { name: "windows" };
      pod.securityContext = { runAsNonRoot: true, windowsOptions: { runAsUserName: "ContainerUser" } };
      delete (pod.containers as Record<string, unknown>[])[0]!.securityContext;
    });
    const sidecar = placeholderShaped(ns, (pod) => {
      (pod.containers as unknown[]).push({ name: "miner", image: "registry.k8s.io/pause:3.10" });
    });
    const refused = {
      privileged,
      hostPath,
      hostNetwork,
      withToken,
      notOwned,
      withCommand,
      withArgs,
      readsSecret,
      allSecrets,
      execProbe,
      sidecar,
      mayEscalate,
    };
    for (const [what, obj] of Object.entries(refused))
      expect(await create(obj), what).to.contain("tekton-affinity-controller-fence");
    expect(
      await create({ ...privileged, metadata: { ...privileged.metadata, namespace: "kube-system" } }),
    ).to.match(/system namespace kube-system/);
    // Its own shape passes: the fence refuses the abuse, not the job.
    expect(await create(placeholderShaped(ns))).to.match(
      /^allowed: .*statefulset.apps\/fence created \(server dry run\)/,
    );
    expect(await create(onWindows), "a Windows placeholder").to.match(/^allowed: /);
    // It fences our service account only: anyone else's writes of these kinds, however they look, are the
    // cluster's own business (a fence that refused them would block every workload).
    const anyonesPod = await cluster.clients.core.createNamespacedPod({
      namespace: ns,
      dryRun: "All",
      body: {
        metadata: { name: "anyones" },
        spec: {
          containers: [
            { name: "c", image: "busybox", command: ["sh"], securityContext: { privileged: true } },
          ],
        },
      },
    });
    expect(anyonesPod.metadata?.name, "another user's privileged pod").to.equal("anyones");
    const anyonesSet = await cluster.clients.apps.createNamespacedStatefulSet({
      namespace: ns,
      dryRun: "All",
      body: privileged as never,
    });
    expect(anyonesSet.metadata?.name, "another user's placeholder-shaped set").to.equal("fence");

    // A tenant's claim and a tenant's pod cannot be deleted; no webhook configuration can be created.
    await cluster.clients.core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: "tenant-data" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Mi" } } },
      },
    });
    await cluster.clients.core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: "tenant-pod" }, spec: { containers: [{ name: "c", image: "busybox" }] } },
    });
    expect(await asController(["-n", ns, "delete", "pvc/tenant-data", "--wait=false"])).to.contain(
      "tekton-affinity-controller-fence",
    );
    expect(await asController(["-n", ns, "delete", "pod/tenant-pod", "--wait=false"])).to.contain(
      "tekton-affinity-controller-fence",
    );
    const webhook = {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata: { name: "intercept-everything" },
      webhooks: [],
    };
    expect(await create(webhook as unknown as Obj)).to.match(/forbidden/i);
    // Both are still there.
    await cluster.clients.core.readNamespacedPersistentVolumeClaim({ name: "tenant-data", namespace: ns });
    await cluster.clients.core.readNamespacedPod({ name: "tenant-pod", namespace: ns });

    // Finalizers: the clean-up may take them off a run's own claim once it is being deleted, and only then.
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a", seconds: 60 }] }));
    await cluster.clients.core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: {
          name: "run-data",
          finalizers: ["example.com/hold"],
          ownerReferences: [
            {
              apiVersion: "tekton.dev/v1",
              kind: "PipelineRun",
              name: run.metadata.name,
              uid: run.metadata.uid!,
            },
          ],
        },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Mi" } } },
      },
    });
    const dropFinalizers = (claim: string) =>
      asController([
        "-n",
        ns,
        "patch",
        `pvc/${claim}`,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold"]}}',
      ]);
    expect(await dropFinalizers("run-data"), "a live claim").to.contain("tekton-affinity-controller-fence");
    expect(await dropFinalizers("tenant-data"), "a tenant's claim").to.contain(
      "tekton-affinity-controller-fence",
    );
    await cluster.clients.core.deleteNamespacedPersistentVolumeClaim({ name: "run-data", namespace: ns });
    expect(
      await asController(["-n", ns, "label", "pvc/run-data", "stolen=yes"]),
      "anything but finalizers",
    ).to.contain("tekton-affinity-controller-fence");
    expect(await dropFinalizers("run-data"), "a run's claim being deleted").to.match(/^allowed: .*patched/);
    const left = await cluster.clients.core.readNamespacedPersistentVolumeClaim({
      name: "run-data",
      namespace: ns,
    });
    expect(left.metadata?.finalizers).to.deep.equal(["example.com/hold"]);
    await cluster.clients.core.patchNamespacedPersistentVolumeClaim(
      { name: "run-data", namespace: ns, body: { metadata: { finalizers: null } } },
      mergePatch(),
    );
  });

  it("a replica with only the deploy/ RBAC passes scenario 2 with no forbidden request", async () => {
    const env = await e2e();
    const { cluster } = env;
    await cluster.apply(rbacAndFence(base));
    const kubeconfig = cluster.writeImpersonatingKubeconfig(
      join(env.logDir, "deploy-sa.kubeconfig"),
      `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`,
    );
    // Only our replica runs, and it must create the webhook TLS Secret from nothing and patch both webhook
    // configurations (which the release installs; here the shared replica's, in URL mode).
    await env.controller.stop();
    const replica = new ControllerProcess({
      kubeconfig,
      redisUrl: cluster.redisUrl,
      logDir: env.logDir,
      replicaId: `deploy-rbac-${process.pid}`,
      args: TEST_CONTROLLER_ARGS,
    });
    try {
      await cluster.kubectlRun(
        "-n",
        NAMESPACE,
        "delete",
        "--ignore-not-found",
        "secret/tekton-affinity-webhook-tls",
      );
      await replica.start();
      await waitFor("webhook configurations patched by the replica", async () => {
        const url = await cluster
          .kubectlRun(
            "get",
            `mutatingwebhookconfiguration/${WEBHOOKS}`,
            "-o",
            "jsonpath={.webhooks[0].clientConfig.url}",
          )
          .catch(() => "");
        return url.includes(`:${replica.port}/`);
      });
      await waitForGate(cluster);

      const ns = await createNamespace(cluster, "deploy-rbac");
      await applyPolicy(cluster, ns, { mode: "pipelineruns" });
      const run = await createRun(
        cluster,
        pipelineRun(ns, {
          tasks: [
            { name: "say-hello" },
            { name: "say-world" },
            { name: "say-hello-again", runAfter: ["say-hello"] },
            { name: "say-world-again", runAfter: ["say-world"] },
          ],
        }),
      );
      const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
      const pods = await taskPods(cluster, ns, run.metadata.name);
      expect(pods.size).to.equal(4);
      const nodes = new Set([...pods.values()].map((p) => p.spec?.nodeName));
      expect(nodes.size, `task pods on ${[...nodes]}`).to.equal(1);
      expect([...nodes][0]).to.equal(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]);
      // Events, the placeholder's deletion and the policy's status all went through too.
      expect((await runEvents(cluster, ns, run.metadata.name)).map((e) => e.reason)).to.include("Placed");
      await waitForEvent(cluster, ns, run.metadata.name, "CleanedUp");
      await waitFor("policy status written", async () =>
        (await getPolicy(cluster, ns, "default")).status?.conditions?.some((c) => c.type === "Ready"),
      );

      const forbidden = readFileSync(replica.log, "utf8")
        .split("\n")
        .filter((l) => /forbidden|HTTP-Code: 403|"code":403/i.test(l));
      expect(forbidden, "403s in the replica's log").to.deep.equal([]);
    } finally {
      await replica.stop();
      // The shared replica takes its webhook configurations back for the test files that follow.
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});

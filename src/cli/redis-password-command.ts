// `tekton-affinity ensure-redis-password`: the controller pod's init container. It creates the Secret
// holding the bundled Redis' password when none exists, with a random one, so `kubectl apply -f
// release.yaml` alone installs a working controller and no password is ever in git or in the release.
// An existing Secret (the operator's own, or the external-redis overlay's) is left untouched. Redis'
// pod waits for the Secret (the kubelet retries a missing one), and so does the controller's container,
// which starts after this one.

import { randomBytes } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { type Command, Option } from "commander";
import { DEFAULTS } from "../controller/options.js";
import { isConflict, isNotFound, loadKubeConfig, makeClients } from "../kube/clients.js";
import { envName } from "./environment.js";

export const REDIS_SECRET = "tekton-affinity-redis";

/** Creates the Secret with a random password unless it exists; says which happened. */
export async function ensureRedisPassword(
  kc: k8s.KubeConfig,
  namespace: string,
  name = REDIS_SECRET,
): Promise<"created" | "exists"> {
  const { core } = makeClients(kc);
  const exists = await core.readNamespacedSecret({ name, namespace }).then(
    () => true,
    (err: unknown) => {
      if (isNotFound(err)) return false;
      throw err;
    },
  );
  if (exists) return "exists";
  try {
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name, namespace, labels: { "app.kubernetes.io/name": "tekton-affinity" } },
        type: "Opaque",
        stringData: { password: randomBytes(32).toString("hex") },
      },
    });
    return "created";
  } catch (err) {
    if (isConflict(err)) return "exists"; // another replica's init container was first
    throw err;
  }
}

export function registerRedisPasswordCommand(program: Command): Command {
  return program
    .command("ensure-redis-password")
    .description(
      "Create the Secret with the bundled Redis' password (a random one) unless it exists (the controller pod's init container)",
    )
    .addOption(new Option("--kubeconfig <path>", "kubeconfig (default: in-cluster)").env("KUBECONFIG"))
    .addOption(
      new Option("--namespace <ns>", "namespace of the Secret (the controller's)")
        .env(envName("NAMESPACE"))
        .default(DEFAULTS.namespace),
    )
    .addOption(new Option("--secret <name>", "the Secret's name").default(REDIS_SECRET))
    .action(async (opts: { kubeconfig?: string; namespace: string; secret: string }) => {
      const outcome = await ensureRedisPassword(loadKubeConfig(opts.kubeconfig), opts.namespace, opts.secret);
      console.log(
        outcome === "created"
          ? `created Secret ${opts.namespace}/${opts.secret} with a random Redis password`
          : `Secret ${opts.namespace}/${opts.secret} exists: left as it is`,
      );
    });
}

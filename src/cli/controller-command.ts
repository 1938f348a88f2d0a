// `tekton-affinity controller`: run one replica.

import { type Command, Option } from "commander";
import { DEFAULT_TENANCY_LIMITS, formatDuration, imageAllowed, parseDuration } from "../api/tenancy.js";
import { MODES, type Mode } from "../api/types.js";
import { Controller } from "../controller/controller.js";
import {
  type ControllerOptions,
  DEFAULTS,
  defaultReplicaId,
  parseList,
  parseResourceCeilings,
} from "../controller/options.js";
import { adoptRenamedVariables, envName as env, parseBoolean } from "./environment.js";

function nonNegativeInt(flag: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`${flag} must be a whole number of at least 0, got "${value}"`);
    return n;
  };
}

function positiveInt(flag: string) {
  return (value: string) => {
    const n = Number(value);
    if (/^tcp:\/\//.test(value)) {
      // The kubelet gives every container <SERVICE>_PORT=tcp://ip:port for each Service in its namespace,
      // so a Service named like one of our variables (tekton-affinity-webhook) sets it.
      throw new Error(
        `${flag} got "${value}", a Service link the kubelet set for a Service whose name matches this option's environment variable: set enableServiceLinks: false on the pod (deploy/ does), or set ${flag} explicitly`,
      );
    }
    if (!Number.isInteger(n) || n <= 0)
      throw new Error(`${flag} must be a positive whole number, got "${value}"`);
    return n;
  };
}

function duration(flag: string) {
  return (value: string) => {
    const ms = parseDuration(value);
    if (ms === undefined || ms <= 0)
      throw new Error(`${flag} must be a positive duration such as 90s, 15m or 1h30m, got "${value}"`);
    return ms;
  };
}

function resourceCeilings(flag: string) {
  return (value: string) => parseResourceCeilings(flag, value);
}

const T = DEFAULT_TENANCY_LIMITS;

/** Options that are each valid but do not fit together. */
function checkOptions(options: ControllerOptions): void {
  const t = options.tenancy;
  if (t.defaultMaxWaitMs > t.maxWaitCeilingMs)
    throw new Error(
      `--default-max-wait (${formatDuration(t.defaultMaxWaitMs)}) is above --max-wait-ceiling (${formatDuration(t.maxWaitCeilingMs)}); lower it or raise the ceiling`,
    );
  if (!t.defaultPlaceholderImage || /\s/.test(t.defaultPlaceholderImage))
    throw new Error(
      `--default-placeholder-image must be an image reference such as registry.k8s.io/pause:3.10, got "${t.defaultPlaceholderImage}"`,
    );
  if (!imageAllowed(t.defaultPlaceholderImage, t.allowedImageRegistries))
    throw new Error(
      `--default-placeholder-image ${t.defaultPlaceholderImage} is not from --allowed-image-registries (${t.allowedImageRegistries.join(",")}); add its registry or mirror the image into one of them`,
    );
  if (options.metricsPort === options.webhookPort)
    throw new Error(
      `--metrics-port and --webhook-port are both ${options.webhookPort}; give metrics a port of its own`,
    );
}

/** The controller's options from what commander parsed, checked as a whole. */
export function controllerOptions(opts: Record<string, unknown>): ControllerOptions {
  const options: ControllerOptions = {
    kubeconfig: opts.kubeconfig as string | undefined,
    redisUrl: opts.redisUrl as string,
    redisPassword: opts.redisPassword as string | undefined,
    redisTls: opts.redisTls === true,
    redisCaFile: opts.redisCaFile as string | undefined,
    redisSentinels: opts.redisSentinels as string | undefined,
    redisSentinelName: opts.redisSentinelName as string | undefined,
    redisSentinelPassword: opts.redisSentinelPassword as string | undefined,
    queuePrefix: opts.queuePrefix as string,
    webhookPort: Number(opts.webhookPort),
    metricsPort: Number(opts.metricsPort),
    webhookUrlHost: opts.webhookUrlHost as string | undefined,
    namespace: opts.namespace as string,
    serviceName: opts.serviceName as string,
    tektonNamespace: opts.tektonNamespace as string,
    tektonResolversNamespace: opts.tektonResolversNamespace as string,
    defaultMode: opts.defaultMode as Mode | undefined,
    concurrency: Number(opts.concurrency),
    replicaId: opts.replicaId as string,
    logLevel: opts.logLevel as string,
    notReadyGraceSeconds: Number(opts.notReadyGraceSeconds),
    settleSeconds: Number(opts.settleSeconds),
    resyncSeconds: Number(opts.resyncSeconds),
    manageWebhookConfigurations: opts.manageWebhookConfigurations === true,
    createWebhookConfigurations: opts.createWebhookConfigurations === true,
    certificateCheckIntervalMs: Number(opts.certificateCheckInterval),
    adminPort: Number(opts.adminPort),
    adminHost: opts.adminHost as string,
    tenancy: {
      allowedTopologyKeys: parseList(opts.allowedTopologyKeys as string),
      allowedPriorityClasses: parseList(opts.allowedPriorityClasses as string),
      allowedImageRegistries: parseList(opts.allowedImageRegistries as string),
      maxPlaceholderResources: opts.maxPlaceholderResources as Record<string, string>,
      maxReservationResources: opts.maxReservationResources as Record<string, string>,
      isolationGroupLabel: opts.isolationGroupLabel as string,
      defaultMaxWaitMs: Number(opts.defaultMaxWait),
      maxWaitCeilingMs: Number(opts.maxWaitCeiling),
      defaultPlaceholderImage: String(opts.defaultPlaceholderImage).trim(),
    },
  };
  checkOptions(options);
  return options;
}

export function registerControllerCommand(program: Command): Command {
  // The variables renamed to carry the prefix keep working for now; commander reads the environment
  // when the subcommand parses, so they are carried over just before.
  program.hook("preSubcommand", (_program, subcommand) => {
    if (subcommand.name() !== "controller") return;
    const { adopted, warnings } = adoptRenamedVariables(process.env);
    Object.assign(process.env, adopted);
    for (const warning of warnings) process.emitWarning(warning, "DeprecationWarning");
  });
  return program
    .command("controller")
    .description("Run a controller replica: webhooks, informers, queue workers and reconcilers")
    .addOption(
      new Option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG, then in-cluster)").env(
        "KUBECONFIG",
      ),
    )
    .addOption(
      new Option("--redis-url <url>", "Redis for the work queue")
        .env(env("REDIS_URL"))
        .default(DEFAULTS.redisUrl),
    )
    .addOption(
      new Option("--redis-password <password>", "Redis password (overrides the URL's)").env(
        env("REDIS_PASSWORD"),
      ),
    )
    .addOption(
      new Option("--redis-tls [enabled]", "connect to Redis over TLS (also implied by rediss://)")
        .env(env("REDIS_TLS"))
        .preset("true")
        .default(false)
        .argParser(parseBoolean("--redis-tls", env("REDIS_TLS"))),
    )
    .addOption(
      new Option(
        "--redis-ca-file <path>",
        "PEM file of the CA that signed Redis' TLS certificate (default: the system's CAs)",
      ).env(env("REDIS_CA_FILE")),
    )
    .addOption(
      new Option("--redis-sentinels <list>", "host:port,... of Redis Sentinels").env(env("REDIS_SENTINELS")),
    )
    .addOption(
      new Option("--redis-sentinel-name <name>", "Sentinel master group name").env(
        env("REDIS_SENTINEL_NAME"),
      ),
    )
    .addOption(
      new Option(
        "--redis-sentinel-password <password>",
        "password of the Sentinels themselves, if they require one (TLS settings apply to them too)",
      ).env(env("REDIS_SENTINEL_PASSWORD")),
    )
    .addOption(
      new Option("--queue-prefix <prefix>", "Redis key prefix, one per installation")
        .env(env("QUEUE_PREFIX"))
        .default(DEFAULTS.queuePrefix),
    )
    .addOption(
      new Option("--webhook-port <port>", "HTTPS port of the webhooks, /healthz and /readyz")
        .env(env("WEBHOOK_PORT"))
        .default(DEFAULTS.webhookPort)
        .argParser(positiveInt("--webhook-port")),
    )
    .addOption(
      new Option("--metrics-port <port>", "plain-HTTP port of /metrics for Prometheus (0: off)")
        .env(env("METRICS_PORT"))
        .default(DEFAULTS.metricsPort)
        .argParser(nonNegativeInt("--metrics-port")),
    )
    .addOption(
      new Option(
        "--webhook-url-host <host>",
        "register webhooks by URL https://<host>:<webhook-port> (or https://<host:port> when given, e.g. a balancer in front of replicas) instead of the Service (local clusters)",
      ).env(env("WEBHOOK_URL_HOST")),
    )
    .addOption(
      new Option("--namespace <ns>", "namespace the controller runs in (webhook Secret, Service)")
        .env(env("NAMESPACE"))
        .default(DEFAULTS.namespace),
    )
    .addOption(
      new Option("--service-name <name>", "Service in front of the webhooks")
        .env(env("SERVICE_NAME"))
        .default(DEFAULTS.serviceName),
    )
    .addOption(
      new Option("--tekton-namespace <ns>", "namespace of Tekton's feature-flags ConfigMap")
        .env(env("TEKTON_NAMESPACE"))
        .default(DEFAULTS.tektonNamespace),
    )
    .addOption(
      new Option(
        "--tekton-resolvers-namespace <ns>",
        "namespace of Tekton's resolvers, whose cluster-resolver-config says which namespaces reserve may read through the cluster resolver (OpenShift Pipelines: openshift-pipelines)",
      )
        .env(env("TEKTON_RESOLVERS_NAMESPACE"))
        .default(DEFAULTS.tektonResolversNamespace),
    )
    .addOption(
      new Option(
        "--default-mode <mode>",
        "cluster default mode for namespaces without a policy (unset: untouched)",
      )
        .env(env("DEFAULT_MODE"))
        .choices(MODES as string[]),
    )
    .addOption(
      new Option("--concurrency <n>", "jobs this replica runs at once")
        .env(env("CONCURRENCY"))
        .default(DEFAULTS.concurrency)
        .argParser(positiveInt("--concurrency")),
    )
    .addOption(
      new Option("--replica-id <id>", "name of this replica in logs and metrics")
        .env(env("REPLICA_ID"))
        .default(defaultReplicaId()),
    )
    .addOption(
      new Option("--log-level <level>", "pino log level")
        .env(env("LOG_LEVEL"))
        .default(DEFAULTS.logLevel)
        .choices(["trace", "debug", "info", "warn", "error"]),
    )
    .addOption(
      new Option(
        "--not-ready-grace-seconds <s>",
        "how long a node may be NotReady before its placeholders move",
      )
        .env(env("NOT_READY_GRACE_SECONDS"))
        .default(DEFAULTS.notReadyGraceSeconds)
        .argParser(positiveInt("--not-ready-grace-seconds")),
    )
    .addOption(
      new Option(
        "--settle-seconds <s>",
        "a node must stay unusable this long before its placeholders move; at most one move per placeholder per period (0: move at once)",
      )
        .env(env("SETTLE_SECONDS"))
        .default(DEFAULTS.settleSeconds)
        .argParser(nonNegativeInt("--settle-seconds")),
    )
    .addOption(
      new Option("--resync-seconds <s>", "how often every unfinished run is enqueued again")
        .env(env("RESYNC_SECONDS"))
        .default(DEFAULTS.resyncSeconds)
        .argParser(positiveInt("--resync-seconds")),
    )
    .addOption(
      new Option("--admin-port <port>", "serve the bull-board queue UI on this port (0: off)")
        .env(env("ADMIN_PORT"))
        .default(DEFAULTS.adminPort)
        .argParser(nonNegativeInt("--admin-port")),
    )
    .addOption(
      new Option("--admin-host <host>", "address the queue UI binds to (reach it with kubectl port-forward)")
        .env(env("ADMIN_HOST"))
        .default(DEFAULTS.adminHost),
    )
    .addOption(
      new Option(
        "--manage-webhook-configurations [enabled]",
        "keep the webhook configurations' caBundle (and URL) in sync in the cluster",
      )
        .env(env("MANAGE_WEBHOOK_CONFIGURATIONS"))
        .preset("true")
        .default(true)
        .argParser(parseBoolean("--manage-webhook-configurations", env("MANAGE_WEBHOOK_CONFIGURATIONS"))),
    )
    .addOption(
      new Option(
        "--create-webhook-configurations [enabled]",
        "apply the webhook configurations whole, creating them if missing, instead of patching the caBundle of those release.yaml installs (out-of-cluster and local clusters)",
      )
        .env(env("CREATE_WEBHOOK_CONFIGURATIONS"))
        .preset("true")
        .default(false)
        .argParser(parseBoolean("--create-webhook-configurations", env("CREATE_WEBHOOK_CONFIGURATIONS"))),
    )
    .addOption(
      new Option(
        "--no-manage-webhook-configurations",
        "leave the webhook configurations to whoever installed them (same as --manage-webhook-configurations=false)",
      ),
    )
    .addOption(
      new Option(
        "--certificate-check-interval <duration>",
        "how often each replica re-reads the webhook certificate Secret and reports what it serves; also the least time between two CA rotation steps",
      )
        .env(env("CERTIFICATE_CHECK_INTERVAL"))
        .default(DEFAULTS.certificateCheckIntervalMs, formatDuration(DEFAULTS.certificateCheckIntervalMs))
        .argParser(duration("--certificate-check-interval")),
    )
    .addOption(
      new Option(
        "--shutdown-drain-seconds <s>",
        "on SIGTERM, fail readiness and keep answering admissions this long before stopping (keep terminationGracePeriodSeconds above it plus the longest job)",
      )
        .env(env("SHUTDOWN_DRAIN_SECONDS"))
        .default(DEFAULTS.shutdownDrainSeconds)
        .argParser(nonNegativeInt("--shutdown-drain-seconds")),
    )
    .addOption(
      new Option(
        "--allowed-topology-keys <keys>",
        "node label keys a policy may use as topologyKey (comma-separated)",
      )
        .env(env("ALLOWED_TOPOLOGY_KEYS"))
        .default(T.allowedTopologyKeys.join(",")),
    )
    .addOption(
      new Option(
        "--allowed-priority-classes <names>",
        "PriorityClasses a placeholder may use (comma-separated; empty: none)",
      )
        .env(env("ALLOWED_PRIORITY_CLASSES"))
        .default(""),
    )
    .addOption(
      new Option(
        "--allowed-image-registries <registries>",
        "registries a placeholder image may come from, e.g. registry.k8s.io,ghcr.io/acme (comma-separated; empty: any)",
      )
        .env(env("ALLOWED_IMAGE_REGISTRIES"))
        .default(""),
    )
    .addOption(
      new Option(
        "--max-placeholder-resources <ceilings>",
        "ceiling per resource on a placeholder's requests and limits, e.g. cpu=1,memory=1Gi",
      )
        .env(env("MAX_PLACEHOLDER_RESOURCES"))
        .default(T.maxPlaceholderResources, "cpu=1,memory=1Gi")
        .argParser(resourceCeilings("--max-placeholder-resources")),
    )
    .addOption(
      new Option(
        "--max-reservation-resources <ceilings>",
        "ceiling on a run's reservation (reserve: LargestTask), cpu and memory, e.g. cpu=8,memory=32Gi",
      )
        .env(env("MAX_RESERVATION_RESOURCES"))
        .default(T.maxReservationResources, "cpu=8,memory=32Gi")
        .argParser(resourceCeilings("--max-reservation-resources")),
    )
    .addOption(
      new Option(
        "--isolation-group-label <key>",
        "namespace label naming a namespace's isolation group; set it only as a cluster admin",
      )
        .env(env("ISOLATION_GROUP_LABEL"))
        .default(T.isolationGroupLabel),
    )
    .addOption(
      new Option(
        "--default-max-wait <duration>",
        "how long a run may wait for placement when its policy sets no maxWait",
      )
        .env(env("DEFAULT_MAX_WAIT"))
        .default(T.defaultMaxWaitMs, formatDuration(T.defaultMaxWaitMs))
        .argParser(duration("--default-max-wait")),
    )
    .addOption(
      new Option("--max-wait-ceiling <duration>", "the longest maxWait a policy may set")
        .env(env("MAX_WAIT_CEILING"))
        .default(T.maxWaitCeilingMs, formatDuration(T.maxWaitCeilingMs))
        .argParser(duration("--max-wait-ceiling")),
    )
    .addOption(
      new Option(
        "--default-placeholder-image <image>",
        "placeholder image when a policy names none, e.g. a mirror of pause for an air-gapped cluster",
      )
        .env(env("DEFAULT_PLACEHOLDER_IMAGE"))
        .default(T.defaultPlaceholderImage),
    )
    .action(async (opts: Record<string, unknown>) => {
      const options = controllerOptions(opts);
      const controller = new Controller(options);
      const drainMs = Number(opts.shutdownDrainSeconds) * 1000;
      const shutdown = async (signal: string) => {
        controller.logger.info({ signal }, "shutting down");
        await controller.shutdown(drainMs).catch(() => undefined);
        process.exit(0);
      };
      process.once("SIGTERM", () => void shutdown("SIGTERM"));
      process.once("SIGINT", () => void shutdown("SIGINT"));
      await controller.start();
    });
}

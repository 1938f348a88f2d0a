// How the controller's flags read the environment: one prefix for every variable, booleans read by
// value, and the variables renamed to carry the prefix still honoured with a deprecation warning.

export const ENV_PREFIX = "TEKTON_AFFINITY_";

/** The environment variable of an option: `REDIS_TLS` -> `TEKTON_AFFINITY_REDIS_TLS`. */
export const envName = (name: string): string => `${ENV_PREFIX}${name}`;

/** Variables that lacked the prefix before 0.2.0, and what they are now. */
export const RENAMED_VARIABLES: Readonly<Record<string, string>> = {
  REDIS_URL: envName("REDIS_URL"),
  REDIS_PASSWORD: envName("REDIS_PASSWORD"),
  POD_NAMESPACE: envName("NAMESPACE"),
  POD_NAME: envName("REPLICA_ID"),
};

export interface Adoption {
  /** Values to set under the new names (each one's new name was unset). */
  adopted: Record<string, string>;
  /** One line per old name in use, saying what to set instead. */
  warnings: string[];
}

/**
 * What to carry over from the old names: an old variable's value moves to its new name unless that is
 * set too, in which case the new one wins (and the warning says the old one is ignored).
 */
export function adoptRenamedVariables(env: Readonly<Record<string, string | undefined>>): Adoption {
  const adopted: Record<string, string> = {};
  const warnings: string[] = [];
  for (const [old, current] of Object.entries(RENAMED_VARIABLES)) {
    const value = env[old];
    if (value === undefined) continue;
    if (env[current] === undefined) {
      adopted[current] = value;
      warnings.push(`${old} is deprecated and will be removed: set ${current} instead`);
    } else warnings.push(`${old} is deprecated and ignored, since ${current} is set: remove ${old}`);
  }
  return { adopted, warnings };
}

const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

/**
 * A boolean option's value, read by what it says: commander would count any value, `false` included,
 * as set. Used as the argParser of `--flag [enabled]` options, so the flag alone, the flag with a value
 * and the environment variable all mean the same.
 */
export function parseBoolean(flag: string, variable: string) {
  return (value: string): boolean => {
    const v = value.trim().toLowerCase();
    if (TRUE.has(v)) return true;
    if (FALSE.has(v)) return false;
    throw new Error(`${flag} (${variable}) must be true or false (also 1/0, yes/no, on/off), got "${value}"`);
  };
}

// Kubernetes resource quantities ("100m", "1Gi", 2, 0.5), parsed exactly, as resource.Quantity does:
// shared by policy validation and tenancy bounds (src/api/validate.ts, tenancy.ts) and by the sizing of
// a run's tasks (src/placement/task-resources.ts).

/** A quantity as it appears in YAML/JSON: "100m", "1Gi", 2, 0.5. */
export type Quantity = string | number;

/** Kubernetes resource.Quantity: signed decimal number, then a binary-SI, decimal-SI or exponent suffix.
 * The exponent alternative comes first so "1E3" is 1000, not 1 exa followed by garbage. */
const QUANTITY_RE = /^([+-]?)(\d*)(?:\.(\d*))?([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$/;
const BINARY_POW2: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL_POW10: Record<string, number> = { n: -9, u: -6, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const QUANTITY_HINT =
  "use a number with an optional suffix: binary Ki, Mi, Gi, Ti, decimal k, M, G, T, m for milli, or an exponent such as 1e3 (e.g. 100m, 0.5, 128Mi, 1Gi)";

/** An exact quantity: sign × digits × 10^pow10 × 2^pow2. */
interface ExactQuantity {
  negative: boolean;
  digits: bigint;
  digitCount: number;
  pow10: number;
  pow2: number;
}

function describe(q: unknown): string {
  return typeof q === "string" ? `"${q}"` : (JSON.stringify(q) ?? String(q));
}

function parseExact(q: unknown, what: string): ExactQuantity {
  let text: string | undefined;
  if (typeof q === "string") text = q;
  else if (typeof q === "number" && Number.isFinite(q)) text = String(q); // e.g. "2", "0.5", "1e+21"
  const m = text === undefined ? null : QUANTITY_RE.exec(text);
  const [, sign = "", int = "", frac = "", suffix = ""] = m ?? [];
  if (!m || int.length + frac.length === 0) {
    throw new Error(`invalid ${what} ${describe(q)}: not a Kubernetes quantity; ${QUANTITY_HINT}`);
  }
  let pow10 = -frac.length;
  let pow2 = 0;
  if (suffix in BINARY_POW2) pow2 = BINARY_POW2[suffix]!;
  else if (suffix in DECIMAL_POW10) pow10 += DECIMAL_POW10[suffix]!;
  else if (suffix) pow10 += Number(suffix.slice(1));
  const all = (int + frac).replace(/^0+/, "");
  return { negative: sign === "-", digits: BigInt(all || "0"), digitCount: all.length, pow10, pow2 };
}

/**
 * The value of a quantity in its base unit (cores, bytes), possibly fractional ("100m" is 0.1); 0 for
 * undefined (a resource not given). Throws an Error naming the value when it does not parse.
 */
export function parseQuantity(q: Quantity | undefined): number {
  if (q === undefined) return 0;
  const e = parseExact(q, "quantity");
  const value = (e.negative ? -1 : 1) * Number(e.digits) * 10 ** e.pow10 * 2 ** e.pow2;
  if (!Number.isFinite(value)) throw new Error(`invalid quantity ${describe(q)}: too large`);
  return value;
}

/** value × 10^scale rounded up, as Kubernetes' Value() (scale 0) and MilliValue() (scale 3) round. */
function scaledCeil(q: Quantity | undefined, what: string, scale: number): number {
  if (q === undefined) return 0;
  const e = parseExact(q, what);
  if (e.digits === 0n) return 0;
  if (e.negative) throw new Error(`invalid ${what} ${describe(q)}: a request cannot be negative`);
  const digits = e.digits * 2n ** BigInt(e.pow2);
  const pow10 = e.pow10 + scale;
  let result: bigint;
  if (pow10 >= 0) {
    // 10^16 already exceeds Number.MAX_SAFE_INTEGER; the bound only keeps "1e999999" from computing.
    if (pow10 > 40) throw new Error(`invalid ${what} ${describe(q)}: too large`);
    result = digits * 10n ** BigInt(pow10);
  } else if (-pow10 > e.digitCount + 20) {
    result = 1n; // under a tenth of the unit (the binary factor is at most 2^60 < 10^19): rounds up to 1
  } else {
    const den = 10n ** BigInt(-pow10);
    result = (digits + den - 1n) / den;
  }
  if (result > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`invalid ${what} ${describe(q)}: too large`);
  return Number(result);
}

/** Millicores of a cpu quantity ("100m" 100, "0.5" 500, "2" 2000), rounded up to a whole millicore as
 * Kubernetes does; 0 for undefined. Throws an Error naming the value when it does not parse. */
export function parseCpuMillis(q: Quantity | undefined): number {
  return scaledCeil(q, "cpu quantity", 3);
}

/** Bytes of a memory quantity ("128Mi", "1Gi", "500M", "1e3", "1024"), rounded up to a whole byte as
 * Kubernetes does; 0 for undefined. Throws an Error naming the value when it does not parse. */
export function parseMemoryBytes(q: Quantity | undefined): number {
  return scaledCeil(q, "memory quantity", 0);
}

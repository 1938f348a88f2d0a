// Validating webhook for AffinityPolicies: the checks the CRD schema and CEL cannot express.

import { DEFAULT_TENANCY_LIMITS, policyErrors, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicy } from "../api/types.js";
import type { AdmissionDecision } from "./admission.js";

export function validateAffinityPolicy(
  policy: AffinityPolicy | undefined,
  limits: TenancyLimits = DEFAULT_TENANCY_LIMITS,
): AdmissionDecision {
  if (!policy?.spec) return { allowed: false, message: "AffinityPolicy has no spec; set at least spec.mode" };
  const errors = policyErrors(policy, limits);
  if (errors.length === 0) return { allowed: true };
  return {
    allowed: false,
    message: `AffinityPolicy ${policy.metadata?.name ?? ""} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
  };
}

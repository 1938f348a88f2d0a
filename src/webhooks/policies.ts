// Validating webhook for AffinityPolicies: the checks the CRD schema and CEL cannot express.

import type { AffinityPolicy } from "../api/types.js";
import { validatePolicy } from "../api/validate.js";
import type { AdmissionDecision } from "./admission.js";

export function validateAffinityPolicy(policy: AffinityPolicy | undefined): AdmissionDecision {
  if (!policy?.spec) return { allowed: false, message: "AffinityPolicy has no spec; set at least spec.mode" };
  const errors = validatePolicy(policy);
  if (errors.length === 0) return { allowed: true };
  return {
    allowed: false,
    message: `AffinityPolicy ${policy.metadata?.name ?? ""} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
  };
}

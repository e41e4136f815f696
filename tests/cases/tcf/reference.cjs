// Decode TC strings with the IAB's reference decoder (@iabtcf/core): one JSON array of strings
// on stdin, one JSON array of decodings on stdout ({valid: false, error} when it refuses one).
// Run by generate.py, which installs the package; NODE_PATH must point at its node_modules.
const { TCString } = require("@iabtcf/core");

const ids = (vector) => (vector ? [...vector.values()].sort((a, b) => a - b) : []);
const present = (vector) => vector && vector.size > 0;
// sorted ids as inclusive [start, end] runs, so a restriction on 1-65535 stays small
const runs = (sorted) =>
  sorted.reduce((out, id) => {
    const last = out[out.length - 1];
    if (last && last[1] === id - 1) last[1] = id;
    else out.push([id, id]);
    return out;
  }, []);

function decode(tc) {
  let m;
  try {
    m = TCString.decode(tc);
  } catch (error) {
    return { valid: false, error: String(error.message || error) };
  }
  const restrictions = m.publisherRestrictions
    .getRestrictions()
    .map((r) => ({
      purpose_id: r.purposeId,
      restriction_type: r.restrictionType,
      vendor_ranges: runs(m.publisherRestrictions.getVendors(r)),
    }))
    .sort((a, b) => a.purpose_id - b.purpose_id || a.restriction_type - b.restriction_type);
  return {
    valid: true,
    version: m.version,
    cmp_id: m.cmpId,
    cmp_version: m.cmpVersion,
    consent_screen: m.consentScreen,
    consent_language: m.consentLanguage.toUpperCase(),
    vendor_list_version: m.vendorListVersion,
    tcf_policy_version: m.policyVersion,
    is_service_specific: m.isServiceSpecific,
    use_non_standard_texts: m.useNonStandardStacks,
    special_feature_opt_ins: ids(m.specialFeatureOptins),
    purposes_consent: ids(m.purposeConsents),
    purposes_li: ids(m.purposeLegitimateInterests),
    purpose_one_treatment: m.purposeOneTreatment,
    publisher_cc: m.publisherCountryCode.toUpperCase(),
    vendor_consents: ids(m.vendorConsents),
    vendor_li: ids(m.vendorLegitimateInterests),
    publisher_restrictions: restrictions,
    vendors_disclosed: present(m.vendorsDisclosed) ? ids(m.vendorsDisclosed) : null,
    vendors_allowed: present(m.vendorsAllowed) ? ids(m.vendorsAllowed) : null,
    publisher_consents: ids(m.publisherConsents),
    publisher_li: ids(m.publisherLegitimateInterests),
    created_ms: m.created.getTime(),
    last_updated_ms: m.lastUpdated.getTime(),
  };
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => process.stdout.write(JSON.stringify(JSON.parse(input).map(decode))));

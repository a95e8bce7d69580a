/**
 * `errorDetails` against a real server, from Node over gRPC-Web (the transport browsers use):
 * each kind of google.rpc detail the server sends decodes into its typed field.
 *
 *   node dist/scripts/errors.js http://127.0.0.1:PORT <admin token>
 */
import { Code, createClient } from "@connectrpc/connect";
import {
  OrganizationKind,
  OrganizationService,
  createLmsTransport,
  errorDetails,
  type LmsErrorDetails,
} from "../src/index.js";

const [baseUrl, adminToken] = process.argv.slice(2);
if (!baseUrl || !adminToken) {
  console.error("usage: node dist/scripts/errors.js <base url> <admin token>");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(condition: boolean, what: string, details?: LmsErrorDetails): void {
  if (condition) {
    passed++;
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}: ${JSON.stringify(details, (_, value) => (typeof value === "bigint" ? value.toString() : value))}`);
  }
}

/** Runs `call`, which must fail, and returns what its error says. */
async function refusal(call: () => Promise<unknown>): Promise<LmsErrorDetails> {
  try {
    await call();
  } catch (error) {
    return errorDetails(error);
  }
  throw new Error("the call succeeded");
}

const organizations = createClient(OrganizationService, createLmsTransport({ baseUrl, token: adminToken }));
const anonymous = createClient(OrganizationService, createLmsTransport({ baseUrl }));

let details = await refusal(() => anonymous.listOrganizations({}));
check(
  details.code === Code.Unauthenticated && details.reason === "UNAUTHENTICATED" && details.domain === "lms.v1",
  "no token: UNAUTHENTICATED, ErrorInfo.reason UNAUTHENTICATED in domain lms.v1",
  details,
);
check(details.requestId !== "", "the call's x-request-id is read from the response", details);

details = await refusal(() =>
  organizations.createOrganization({ organization: { name: "", kind: OrganizationKind.MINISTRY } }),
);
check(
  details.code === Code.InvalidArgument &&
    details.reason === "INVALID_ARGUMENT" &&
    details.fieldViolations.some((violation) => violation.field === "organization.name" && violation.description !== ""),
  "a bad field: INVALID_ARGUMENT with a BadRequest violation naming organization.name",
  details,
);

const ministry = await organizations.createOrganization({
  organization: { name: "Ministry of Errors", kind: OrganizationKind.MINISTRY, externalCode: `ERR-${Date.now()}` },
});
details = await refusal(() =>
  organizations.updateOrganization({
    organization: { id: ministry.id, name: "Renamed", etag: `"${Number.MAX_SAFE_INTEGER}"` },
    updateMask: { paths: ["name"] },
  }),
);
check(
  details.code === Code.Aborted &&
    details.reason === "ETAG_MISMATCH" &&
    details.preconditionViolations.some((violation) => violation.type === "ETAG" && violation.subject.includes(ministry.id)),
  "a stale etag: ABORTED with a PreconditionFailure violation of type ETAG on the organisation",
  details,
);

const missing = "01900000-0000-7000-8000-000000000000";
details = await refusal(() => organizations.getOrganization({ id: missing }));
check(
  details.code === Code.NotFound &&
    details.resourceInfo?.resourceType === "organization" &&
    details.resourceInfo.resourceName === missing,
  "a missing resource: NOT_FOUND with ResourceInfo naming it",
  details,
);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

/**
 * A Node backend-for-frontend calling over gRPC-Web on HTTP/1.1 (connect-node, `httpVersion:
 * "1.1"`) with a large request and no valid token must get UNAUTHENTICATED, every time, not
 * "write EPIPE" or "socket hang up": the server refuses before reading the body, and must not
 * close the connection while the client is still writing it.
 *
 *   node dist/scripts/epipe.js http://127.0.0.1:PORT [attempts] [people]
 *
 * Each attempt sends a BatchUpsertPeople of `people` records (2,000 by default: about 400 KB),
 * half without a token and half with a token that does not verify. Prints what each call ended with, and exits 1 unless every
 * attempt got UNAUTHENTICATED with its ErrorInfo.
 */
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  BatchUpsertPeopleRequestSchema,
  PersonRecordSchema,
  PersonService,
  codeName,
  errorDetails,
  tokenInterceptor,
} from "../src/index.js";

const baseUrl = process.argv[2];
const attempts = Number(process.argv[3] ?? "20");
const count = Number(process.argv[4] ?? "2000");
if (!baseUrl || !Number.isInteger(attempts) || attempts < 1 || !Number.isInteger(count) || count < 1) {
  console.error("usage: node dist/scripts/epipe.js <base url> [attempts] [people]");
  process.exit(2);
}

// About 200 bytes a record: far more than the socket buffers take before the server answers.
const people = Array.from({ length: count }, (_, index) =>
  create(PersonRecordSchema, {
    externalId: `EPIPE-${index.toString().padStart(5, "0")}`,
    fullName: `Officer ${index} `.padEnd(120, "x"),
    email: `officer${index}@example.gov.my`,
    organizationExternalCode: "KD",
  }),
);
const request = create(BatchUpsertPeopleRequestSchema, { people });
console.log(`${attempts} attempts, ${count} people (${toBinary(BatchUpsertPeopleRequestSchema, request).length} bytes) each`);

const outcomes = new Map<string, number>();
let failures = 0;
for (let attempt = 0; attempt < attempts; attempt++) {
  const token = attempt % 2 === 0 ? undefined : "not-a-valid-token";
  // A fresh transport (and so a fresh HTTP/1.1 connection) per attempt, as a BFF under light load.
  const transport = createGrpcWebTransport({
    baseUrl,
    httpVersion: "1.1",
    interceptors: token ? [tokenInterceptor(token)] : [],
  });
  const people = createClient(PersonService, transport);
  let outcome: string;
  try {
    await people.batchUpsertPeople(request);
    outcome = "OK (unexpected)";
  } catch (error) {
    const details = errorDetails(error);
    const cause = (details.code === Code.Unknown || details.code === Code.Internal || details.code === Code.Unavailable)
      ? `: ${details.message}`
      : "";
    outcome = `${codeName(details.code)} ${details.reason}${cause}`.trim();
    if (details.code !== Code.Unauthenticated || details.reason !== "UNAUTHENTICATED") {
      failures++;
    }
  }
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
}
for (const [outcome, count] of outcomes) {
  console.log(`${count} x ${outcome}`);
}
console.log(`${attempts - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);

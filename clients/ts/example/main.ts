/**
 * A learner's page built with the LMS TypeScript client: enrolments and progress, certificates
 * with their verification links, a refused call's reason, and the event feed followed live.
 *
 * Query string: `server` (the LMS address), `token` (the learner's token; its subject is their
 * person id), `person` (defaults to the token's subject) and, to follow the feed, `feedToken` (a
 * token of an `hr_service` or `admin`: the feed is for HR systems, not for learners).
 */
import { createClient, type Interceptor } from "@connectrpc/connect";
import {
  CertificateStatus,
  CertificationService,
  EnrollmentState,
  EventService,
  ProgrammeService,
  ProgressService,
  codeName,
  createLmsTransport,
  errorDetails,
} from "../src/index.js";

const params = new URLSearchParams(location.search);
const server = (params.get("server") ?? "").replace(/\/+$/, "");
const token = params.get("token") ?? "";
const feedToken = params.get("feedToken") ?? "";
const person = params.get("person") || subjectOf(token);

/** Sends a W3C `traceparent` with every call, so the server's trace continues the page's. */
const tracing: Interceptor = (next) => (request) => {
  const hex = (bytes: number) =>
    Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
  request.header.set("traceparent", `00-${hex(16)}-${hex(8)}-01`);
  return next(request);
};

const transport = createLmsTransport({ baseUrl: server, token, interceptors: [tracing], defaultTimeoutMs: 10_000 });
const programmes = createClient(ProgrammeService, transport);
const progress = createClient(ProgressService, transport);
const certification = createClient(CertificationService, transport);

function section(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`no #${id}`);
  return element;
}

function setStatus(id: string, state: string, text: string): void {
  const element = section(id);
  element.dataset.state = state;
  element.querySelector(".status")!.textContent = text;
}

/** The `sub` claim of a JWT, without verifying it (the server does). */
function subjectOf(jwt: string): string {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return (JSON.parse(atob(payload)) as { sub?: string }).sub ?? "";
  } catch {
    return "";
  }
}

/** One line saying why a call failed: code, ErrorInfo.reason, message and the request id. */
function describe(error: unknown): string {
  const details = errorDetails(error);
  const fields = details.fieldViolations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return [
    codeName(details.code),
    details.reason,
    details.message,
    fields && `(${fields})`,
    details.requestId && `request id ${details.requestId}`,
  ]
    .filter(Boolean)
    .join(" · ");
}

async function showEnrollments(): Promise<void> {
  const { enrollments } = await programmes.listEnrollments({ personId: person, pageSize: 100 });
  const rows = await Promise.all(
    enrollments.map(async (enrollment) => {
      const [programme, cohort, done] = await Promise.all([
        programmes.getProgramme({ id: enrollment.programmeId }),
        programmes.getCohort({ id: enrollment.cohortId }),
        progress.getEnrollmentProgress({ enrollmentId: enrollment.id }),
      ]);
      const row = document.createElement("tr");
      row.dataset.enrollmentId = enrollment.id;
      for (const text of [
        programme.title,
        cohort.name,
        EnrollmentState[enrollment.state],
        `${Math.round(done.percentComplete)}% complete`,
      ]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
  const table = section("enrollments").querySelector("table")!;
  table.querySelector("tbody")!.replaceChildren(...rows);
  table.hidden = rows.length === 0;
  setStatus("enrollments", "ready", rows.length === 0 ? "No enrolments." : `${rows.length} enrolment(s).`);
}

async function showCertificates(): Promise<void> {
  const { certificates } = await certification.listCertificates({ personId: person });
  const items = certificates.map((certificate) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `${server}/verify/${encodeURIComponent(certificate.verificationCode)}`;
    link.textContent = `Certificate ${certificate.verificationCode}`;
    link.className = "verify";
    item.append(link, ` — ${CertificateStatus[certificate.status]}`);
    return item;
  });
  section("certificates").querySelector("ul")!.replaceChildren(...items);
  setStatus("certificates", "ready", items.length === 0 ? "No certificates." : `${items.length} certificate(s).`);
}

/** The feed is for HR systems: with a learner's token the server refuses, and says why. */
async function showRefusal(): Promise<void> {
  const events = createClient(EventService, transport);
  try {
    for await (const _event of events.watchEvents({ untilCaughtUp: true })) {
      break;
    }
    setStatus("refused", "unexpected", "The feed answered this token.");
  } catch (error) {
    const details = errorDetails(error);
    const element = section("refused");
    element.dataset.reason = details.reason;
    element.querySelector(".status")!.classList.add("refusal");
    setStatus("refused", "refused", `Refused: ${describe(error)}`);
  }
}

/** Follows the feed with the HR token; events up to the head at opening are history, not shown. */
async function followEvents(): Promise<void> {
  if (!feedToken) return;
  const feed = createClient(EventService, createLmsTransport({ baseUrl: server, token: feedToken, interceptors: [tracing] }));
  const list = section("events").querySelector("ul")!;
  let head: bigint | undefined;
  setStatus("events", "opening", "Opening the feed…");
  try {
    for await (const event of feed.watchEvents(
      {},
      {
        onHeader(headers) {
          head = BigInt(headers.get("lms-feed-head") ?? "0");
          setStatus("events", "watching", `Following the feed from event ${head}.`);
        },
      },
    )) {
      if (head === undefined || event.cursor <= head) continue;
      const item = document.createElement("li");
      item.dataset.cursor = event.cursor.toString();
      item.dataset.type = event.type;
      const about = event.personId === person ? "you" : event.personId || event.subjectId;
      item.textContent = `${event.type} (about ${about}) at ${event.time ? new Date(Number(event.time.seconds) * 1000).toLocaleTimeString() : "?"}`;
      list.prepend(item);
      if (event.personId === person) {
        void showEnrollments().catch((error) => setStatus("enrollments", "failed", describe(error)));
      }
    }
  } catch (error) {
    setStatus("events", "failed", `The feed stopped: ${describe(error)}`);
  }
}

if (!server || !token) {
  section("usage").hidden = false;
} else {
  showEnrollments().catch((error) => setStatus("enrollments", "failed", describe(error)));
  showCertificates().catch((error) => setStatus("certificates", "failed", describe(error)));
  void showRefusal();
  void followEvents();
}

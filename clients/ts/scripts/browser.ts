/**
 * The browser test (run by .ci/browser): headless Chromium loads the example page (example/,
 * built into example/dist) from a small static server, and the page calls a real `lms serve`
 * over gRPC-Web with CORS. It checks what the page shows: the learner's enrolments and progress,
 * a refused call's ErrorInfo.reason, an event that arrives while the page is open, and their
 * certificate's link, which opens its verification page (`/verify/<code>`) naming the holder.
 *
 *   node dist/scripts/browser.js
 *
 * Environment: LMS_BIN (default ../../target/debug/lms), CHROMIUM (default /usr/bin/chromium),
 * LMS_BROWSER_ARTIFACTS (where the screenshots go; default ../../target/browser).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { chromium, type Browser } from "playwright-core";
import {
  CertificationService,
  PersonService,
  ProgrammeService,
  ProgressService,
  createLmsTransport,
} from "../src/index.js";

/** clients/ts: this file runs as dist/scripts/browser.js. */
const root = fileURLToPath(new URL("../../", import.meta.url));
const repository = resolve(root, "../..");
const lmsBin = process.env.LMS_BIN ?? join(repository, "target/debug/lms");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.LMS_BROWSER_ARTIFACTS ?? join(repository, "target/browser");
const pageDir = join(root, "example/dist");

let passed = 0;
/** Records a check that held; throws (failing the run) on one that did not. */
function check(condition: unknown, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`);
  passed++;
  console.log(`ok - ${what}`);
}

/** Serves `pageDir` on 127.0.0.1 (a free port); returns the server and its origin. */
async function serveExample(): Promise<{ server: Server; origin: string }> {
  const types: Record<string, string> = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json",
  };
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    const file = path === "/" ? "index.html" : path.slice(1);
    if (file.includes("..") || !(extname(file) in types)) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(pageDir, file));
      response.writeHead(200, { "content-type": types[extname(file)] }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return { server, origin: `http://127.0.0.1:${address.port}` };
}

/** Runs `lms` with `args`; returns its standard output. */
function lms(args: string[]): string {
  return execFileSync(lmsBin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** Starts `lms serve` on a free port (never 50051); resolves with its address once it listens. */
async function startServer(dataDir: string, origin: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(
    lmsBin,
    ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--cors-origins", origin, "--log-format", "json"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const log: string[] = [];
  const address = await new Promise<string>((resolveAddress, reject) => {
    const timer = setTimeout(() => reject(new Error(`lms serve did not listen within 30 s:\n${log.join("\n")}`)), 30_000);
    child.once("exit", (code) => reject(new Error(`lms serve exited with ${code}:\n${log.join("\n")}`)));
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        const match = /"address":"([^"]+)"/.exec(line);
        if (match && line.includes("serving gRPC")) {
          clearTimeout(timer);
          resolveAddress(match[1]);
        }
      });
    }
  });
  return { child, address };
}

/** Polls `condition` every 100 ms until it returns a value, or fails after `seconds`. */
async function eventually<T>(what: string, seconds: number, condition: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await condition();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

const started = Date.now();
const dataDir = await mkdtemp(join(tmpdir(), "lms-browser-"));
let lmsChild: ChildProcess | undefined;
let staticServer: Server | undefined;
let browser: Browser | undefined;
try {
  // Data: the national profile at toy size gives certified ambassadors with a completed
  // enrolment, through the API (`lms seed` runs its own server on the data dir).
  lms(["seed", "--profile", "national", "--officers", "20", "--ambassadors", "2", "--data-dir", dataDir]);
  const example = await serveExample();
  staticServer = example.server;
  const served = await startServer(dataDir, example.origin);
  lmsChild = served.child;
  const server = `http://${served.address}`;
  console.log(`lms at ${server}, page at ${example.origin}, data in ${dataDir}`);

  const adminToken = lms(["token", "--subject", "browser-test-admin", "--role", "admin", "--data-dir", dataDir]);
  const admin = createLmsTransport({ baseUrl: server, token: adminToken });
  const certification = createClient(CertificationService, admin);
  const programmes = createClient(ProgrammeService, admin);
  const people = createClient(PersonService, admin);

  // A certified learner with at least one enrolment.
  const { certificates } = await certification.listCertificates({ pageSize: 100 });
  let learner: { personId: string; code: string } | undefined;
  for (const certificate of certificates) {
    const { enrollments } = await programmes.listEnrollments({ personId: certificate.personId });
    if (enrollments.length > 0) {
      learner = { personId: certificate.personId, code: certificate.verificationCode };
      break;
    }
  }
  check(learner, "the seed made a certified learner with an enrolment");
  const { personId, code } = learner!;
  const person = await people.getPerson({ id: personId });
  const { enrollments } = await programmes.listEnrollments({ personId });
  const expected = await Promise.all(
    enrollments.map(async (enrollment) => ({
      programme: (await programmes.getProgramme({ id: enrollment.programmeId })).title,
      cohort: (await programmes.getCohort({ id: enrollment.cohortId })).name,
      percent: Math.round(
        (await createClient(ProgressService, admin).getEnrollmentProgress({ enrollmentId: enrollment.id })).percentComplete,
      ),
    })),
  );

  const learnerToken = lms(["token", "--subject", personId, "--role", "learner", "--data-dir", dataDir]);
  const feedToken = lms(["token", "--subject", "browser-test-hr", "--role", "hr_service", "--data-dir", dataDir]);
  const query = new URLSearchParams({ server, token: learnerToken, person: personId, feedToken });

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-background-networking"],
  });
  const page = await browser.newPage();
  const consoleErrors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  await page.goto(`${example.origin}/?${query}`);

  // Enrolments and progress, as the learner's own token reads them.
  await page.waitForSelector('#enrollments:is([data-state="ready"], [data-state="failed"])', { timeout: 20_000 });
  const enrollmentText = await page.locator("#enrollments").innerText();
  check(
    (await page.getAttribute("#enrollments", "data-state")) === "ready",
    `enrolments listed with the learner's token ("${await page.locator("#enrollments .status").innerText()}")`,
  );
  for (const row of expected) {
    check(
      enrollmentText.includes(row.programme) &&
        enrollmentText.includes(row.cohort) &&
        enrollmentText.includes(`${row.percent}% complete`),
      `the page shows ${row.programme} / ${row.cohort} at ${row.percent}% complete`,
    );
  }

  // The certificate and its verification link.
  await page.waitForSelector('#certificates:is([data-state="ready"], [data-state="failed"])', { timeout: 20_000 });
  const verifyUrl = `${server}/verify/${encodeURIComponent(code)}`;
  const hrefs = await page.locator("#certificates a.verify").evaluateAll((links) =>
    links.map((link) => (link as HTMLAnchorElement).href),
  );
  check(hrefs.includes(verifyUrl), `the certificate links to ${verifyUrl}`);

  // A refused call: the feed is for HR systems, and the page shows why it was refused.
  await page.waitForSelector('#refused:is([data-state="refused"], [data-state="unexpected"])', { timeout: 20_000 });
  const refusedText = await page.locator("#refused .status").innerText();
  check(
    (await page.getAttribute("#refused", "data-reason")) === "ROLE_NOT_ALLOWED" &&
      refusedText.includes("PERMISSION_DENIED") &&
      refusedText.includes("ROLE_NOT_ALLOWED"),
    `the refusal's code and ErrorInfo.reason are shown ("${refusedText}")`,
  );
  check(/request id \S+/.test(refusedText), "the refusal's x-request-id is readable by the page (CORS exposes it)");

  // An event while the page is open: the page follows the feed from its head when it opened.
  await page.waitForSelector('#events[data-state="watching"]', { timeout: 20_000 });
  check(true, "the page follows WatchEvents (lms-feed-head read from the response headers)");
  const renamed = `${person.fullName} (renamed by the browser test)`;
  await people.updatePerson({ person: { id: personId, fullName: renamed }, updateMask: { paths: ["full_name"] } });
  const event = await eventually("the person.updated event on the page", 15, async () => {
    const text = await page.locator('#events li[data-type="person.updated"]').allInnerTexts();
    return text.length > 0 ? text[0] : undefined;
  });
  check(event.includes("about you"), `the event arrived while the page was open ("${event}")`);
  const head = /from event (\d+)/.exec(await page.locator("#events .status").innerText())?.[1];
  const cursors = await page.locator("#events li").evaluateAll((items) =>
    items.map((item) => (item as HTMLElement).dataset.cursor ?? ""),
  );
  check(
    head !== undefined && cursors.every((cursor) => BigInt(cursor) > BigInt(head)),
    `only events after the feed's head at opening (${head}) are shown (${cursors.join(", ")})`,
  );

  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "learner-page.png"), fullPage: true });
  check(consoleErrors.length === 0, `no errors in the page's console${consoleErrors.length ? `: ${consoleErrors.join(" | ")}` : ""}`);

  // The certificate's verification page (served by the same listener over plain HTTP).
  await Promise.all([page.waitForURL(verifyUrl), page.locator("#certificates a.verify").first().click()]);
  const verifyText = await page.locator("body").innerText();
  check(verifyText.includes(renamed), `the verification page names the holder (${renamed})`);
  await page.screenshot({ path: join(artifacts, "verify-page.png"), fullPage: true });

  console.log(`browser test took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${artifacts}`);
  console.log(`${passed} passed, 0 failed`);
} catch (error) {
  console.error(error);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  staticServer?.close();
  if (lmsChild && lmsChild.exitCode === null) {
    const exited = new Promise((done) => lmsChild!.once("exit", done));
    lmsChild.kill("SIGTERM");
    await exited;
  }
  await rm(dataDir, { recursive: true, force: true });
}

#!/usr/bin/env python3
"""A ministry's HR system talking to the LMS over gRPC (grpcio): the example of docs/hr-integration.md.

One run does what a nightly HR job does:

1. organisations: the admin part creates the ministry's units (idempotent by `external_code`);
2. the feed: `EventService.WatchEvents` from the resume token in the state file, the state saved
   after each event; a restarted run resumes exactly where the last one stopped, and a position
   the feed refuses (FAILED_PRECONDITION: the database was restored) leads to a resynchronisation
   from a snapshot;
3. roster sync: `BatchUpsertPeople` of the roster CSV, keyed by the HR system's `external_id`,
   organisations named by `external_code`; the per-record results give external_id -> LMS id;
4. leavers: people of the ministry who are ACTIVE in the LMS but missing from the roster become
   INACTIVE (`UpdatePerson` with a FieldMask and the person's etag);
5. programme team (admin token, so that there is something to report): a course with a module
   and two activities, published; a programme, a running cohort, the synced people enrolled,
   progress recorded so that some complete; a certification track, and a certificate for each
   person who completed;
6. the feed again, then a report: completions and certificates read by external id
   (`BatchLookupPeople`).

Stubs are generated from the repository's `proto/` at start, into a temporary folder.
Every call that writes carries a request id, reused by its retries, so a retry after a lost
answer replays instead of writing twice; the programme team derives its ids from stable labels,
so a re-run of the program replays its setup.

Usage (see docs/hr-integration.md; `.ci/hr-example` runs it against a fresh server):

    LMS_HR_TOKEN=... LMS_ADMIN_TOKEN=... python hr_sync.py --target 127.0.0.1:50051 \
        --roster roster.csv --state state.json
"""

from __future__ import annotations

import argparse
import atexit
import csv
import hashlib
import importlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

HERE = pathlib.Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
# Namespace of every request id and event id this program derives (uuid5).
ID_NAMESPACE = uuid.UUID("6f1d8f0e-3c55-4e8e-9d43-2b8f3e0b7a11")
# Per-call deadline: the server honours it; a call past it is DEADLINE_EXCEEDED and retried.
DEADLINE_SECONDS = 30.0
# Codes worth retrying (with the same request id): the server was busy or went away.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
COURSE_CODE = "HRX-DIGI-101"
PROGRAMME_CODE = "HRX-DIGI"
TRACK_CODE = "HRX-DIGI-CHAMP"


# ---- stubs ------------------------------------------------------------------------------------


def generate_stubs(proto_root: pathlib.Path) -> pathlib.Path:
    """Compiles every .proto under `proto_root` with grpc_tools.protoc into a temporary folder."""
    from grpc_tools import protoc

    out = pathlib.Path(tempfile.mkdtemp(prefix="lms-stubs-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    files = sorted(str(path.relative_to(proto_root)) for path in proto_root.rglob("*.proto"))
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if status != 0:
        raise SystemExit(f"protoc failed on {proto_root} (exit {status})")
    sys.path.insert(0, str(out))
    return out


class Pb:
    """The generated modules, imported after `generate_stubs`: `pb.person.Person`, `pb.person_grpc...`."""

    def __init__(self) -> None:
        for name in ("organization", "person", "course", "programme", "progress", "certification", "event"):
            setattr(self, name, importlib.import_module(f"lms.v1.{name}_service_pb2"))
            setattr(self, f"{name}_grpc", importlib.import_module(f"lms.v1.{name}_service_pb2_grpc"))
        self.field_mask = importlib.import_module("google.protobuf.field_mask_pb2")
        self.timestamp = importlib.import_module("google.protobuf.timestamp_pb2")


# ---- errors -----------------------------------------------------------------------------------


@dataclass
class RpcError:
    """What a failed call said: its code and message, and the google.rpc details it carried."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[tuple[str, str]] = field(default_factory=list)
    precondition_violations: list[tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.code.name} {self.reason or '-'}: {self.message}"
        if self.metadata:
            text += f" {self.metadata}"
        for path, description in self.field_violations:
            text += f"\n    field {path}: {description}"
        return text


def read_error(error: grpc.RpcError) -> RpcError:
    """Reads a failed call's google.rpc.Status (grpc-status-details-bin) with grpcio-status.

    Every LMS error carries an ErrorInfo (a stable `reason` to branch on, and `metadata` with
    the values in the message); INVALID_ARGUMENT adds a BadRequest naming each bad field,
    FAILED_PRECONDITION may add a PreconditionFailure.
    """
    result = RpcError(code=error.code(), message=error.details() or "")
    status = rpc_status.from_call(error)
    if status is None:
        return result
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            result.reason, result.metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            result.field_violations = [(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            result.precondition_violations = [(v.type, v.subject, v.description) for v in failure.violations]
    return result


class LmsError(Exception):
    """A call failed for good (after retries); `error` holds the decoded status."""

    def __init__(self, what: str, error: RpcError) -> None:
        super().__init__(f"{what}: {error}")
        self.error = error


def stable_id(*parts: Any) -> str:
    """A UUID derived from `parts`: the same request always gets the same request id."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(str(part) for part in parts)))


def content_id(label: str, message: Any) -> str:
    """A request id derived from a message's bytes: a changed request is a new request."""
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    return stable_id(label, digest)


# ---- the client -------------------------------------------------------------------------------


class Lms:
    """Stubs of the services the example calls, and one way to call them."""

    def __init__(self, pb: Pb, channel: grpc.Channel, hr_token: str, admin_token: str) -> None:
        self.pb = pb
        self.hr = [("authorization", f"Bearer {hr_token}")]
        self.admin = [("authorization", f"Bearer {admin_token}")]
        self.organizations = pb.organization_grpc.OrganizationServiceStub(channel)
        self.people = pb.person_grpc.PersonServiceStub(channel)
        self.courses = pb.course_grpc.CourseServiceStub(channel)
        self.programmes = pb.programme_grpc.ProgrammeServiceStub(channel)
        self.progress = pb.progress_grpc.ProgressServiceStub(channel)
        self.certification = pb.certification_grpc.CertificationServiceStub(channel)
        self.events = pb.event_grpc.EventServiceStub(channel)

    def call(self, method: Callable[..., Any], request: Any, credentials: list[tuple[str, str]], what: str) -> Any:
        """Calls a unary method with a deadline; retries busy / unavailable answers with backoff.

        Retried: UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and ABORTED with reason
        TRANSACTION_CONFLICT (docs/errors.md). Safe because every write carries a request id (or,
        for progress, event ids) and reads change nothing. Any other failure raises `LmsError`.
        """
        delay = 0.2
        for attempt in range(6):
            try:
                return method(request, metadata=credentials, timeout=DEADLINE_SECONDS)
            except grpc.RpcError as failure:
                error = read_error(failure)
                conflict = error.code == grpc.StatusCode.ABORTED and error.reason == "TRANSACTION_CONFLICT"
                if (error.code not in RETRYABLE and not conflict) or attempt == 5:
                    raise LmsError(what, error) from None
                print(f"  retrying {what} in {delay:.1f}s: {error.code.name}", file=sys.stderr)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def pages(
        self, method: Callable[..., Any], request: Any, items: str, credentials: list[tuple[str, str]]
    ) -> Iterable[Any]:
        """Yields every item of a keyset-paginated list (`page_size` 1000, `next_page_token`)."""
        request.page_size = 1000
        while True:
            page = self.call(method, request, credentials, f"listing {items}")
            yield from getattr(page, items)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token


# ---- 1. organisations (admin) -------------------------------------------------------------------


def ensure_organisations(lms: Lms, path: pathlib.Path) -> dict[str, str]:
    """Creates the organisations of `path` (parents first); returns external_code -> id.

    The request id is derived from the code, so a re-run replays the first create. An
    organisation made by someone else answers ALREADY_EXISTS; it is then looked up by code.
    """
    pb = lms.pb
    ids: dict[str, str] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            code = row["external_code"]
            organisation = pb.organization.Organization(
                name=row["name"],
                kind=pb.organization.OrganizationKind.Value(f"ORGANIZATION_KIND_{row['kind']}"),
                parent_id=ids[row["parent_code"]] if row["parent_code"] else "",
                external_code=code,
            )
            request = pb.organization.CreateOrganizationRequest(
                organization=organisation, request_id=stable_id("organisation", code)
            )
            try:
                ids[code] = lms.call(lms.organizations.CreateOrganization, request, lms.admin, f"creating {code}").id
            except LmsError as failure:
                if failure.error.code != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                ids[code] = find_organisation(lms, code, failure.error)
    print(f"organisations: {len(ids)} ready ({', '.join(ids)})")
    return ids


def find_organisation(lms: Lms, code: str, error: RpcError) -> str:
    """Returns the id of the organisation whose `external_code` is `code`.

    ALREADY_EXISTS names the existing resource in its ErrorInfo metadata (`existing_id`);
    failing that, `LookupOrganization` finds it by code.
    """
    if error.metadata.get("existing_id"):
        return error.metadata["existing_id"]
    request = lms.pb.organization.LookupOrganizationRequest(external_code=code)
    return lms.call(lms.organizations.LookupOrganization, request, lms.admin, f"looking up {code}").id


# ---- 2. roster sync (hr_service) ---------------------------------------------------------------


def read_roster(path: pathlib.Path) -> list[dict[str, str]]:
    """Reads the roster CSV: external_id, full_name, email, organization_code, sector."""
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def sync_roster(lms: Lms, roster: list[dict[str, str]]) -> dict[str, str]:
    """Upserts the roster by `external_id` in batches of up to 1,000 (one transaction each).

    Organisations are named by `external_code`, so the HR system needs no LMS ids. A record
    the LMS refuses is reported (index, external_id, field, reason) and nothing of it is
    written; the good records of the batch are applied. Every record comes back in `results`
    with the LMS id of its person: returns external_id -> id, the HR system's mapping table.
    """
    pb = lms.pb
    outcomes = pb.person.RecordOutcome
    ids: dict[str, str] = {}
    for start in range(0, len(roster), 1000):
        chunk = roster[start : start + 1000]
        request = pb.person.BatchUpsertPeopleRequest(
            people=[
                pb.person.PersonRecord(
                    external_id=row["external_id"],
                    full_name=row["full_name"],
                    email=row["email"],
                    organization_external_code=row["organization_code"],
                    sector=pb.person.Sector.Value(f"SECTOR_{row['sector']}"),
                    status=pb.person.PersonStatus.PERSON_STATUS_ACTIVE,
                )
                for row in chunk
            ]
        )
        # A fresh request id per batch, reused by every retry of it: a retry after a lost answer
        # replays the first answer instead of applying the batch twice.
        request.request_id = str(uuid.uuid4())
        response = lms.call(lms.people.BatchUpsertPeople, request, lms.hr, "upserting people")
        counts = response.counts
        print(
            f"roster: {len(chunk)} records: {counts.created} created, {counts.updated} updated,"
            f" {counts.unchanged} unchanged, {counts.failed} refused"
        )
        for result in response.results:
            if result.outcome == outcomes.RECORD_OUTCOME_REFUSED:
                print(f"  refused {result.external_id} (record {start + result.index}): {result.reason} {result.field}")
            else:
                ids[result.external_id] = result.id
    return ids


def people_of(lms: Lms, ministry_id: str, status: int = 0) -> list[Any]:
    """Lists the people of the ministry's subtree (optionally of one status)."""
    pb = lms.pb
    request = pb.person.ListPeopleRequest(organization_subtree=ministry_id, status=status)
    return list(lms.pages(lms.people.ListPeople, request, "people", lms.hr))


def lookup_people(lms: Lms, external_ids: list[str]) -> dict[str, Any]:
    """Returns external_id -> Person for the given keys, 1,000 a call (`BatchLookupPeople`)."""
    pb = lms.pb
    found: dict[str, Any] = {}
    for start in range(0, len(external_ids), 1000):
        request = pb.person.BatchLookupPeopleRequest(external_ids=external_ids[start : start + 1000])
        response = lms.call(lms.people.BatchLookupPeople, request, lms.hr, "looking people up")
        found.update((person.external_id, person) for person in response.people)
    return found


# ---- 3. leavers (hr_service) --------------------------------------------------------------------


def deactivate_leavers(lms: Lms, ministry_id: str, roster: list[dict[str, str]]) -> list[str]:
    """Sets every ACTIVE person of the ministry missing from the roster to INACTIVE.

    `UpdatePerson` with `update_mask: status` and the etag read just before: if someone else
    changed the person in between, the LMS answers ABORTED (reason ETAG_MISMATCH) and the
    person is read again and retried. Returns the external ids deactivated.
    """
    pb = lms.pb
    current = {row["external_id"] for row in roster}
    active = people_of(lms, ministry_id, pb.person.PersonStatus.PERSON_STATUS_ACTIVE)
    leavers = [person for person in active if person.external_id not in current]
    for person in leavers:
        for _attempt in range(3):
            request = pb.person.UpdatePersonRequest(
                person=pb.person.Person(
                    id=person.id, status=pb.person.PersonStatus.PERSON_STATUS_INACTIVE, etag=person.etag
                ),
                update_mask=pb.field_mask.FieldMask(paths=["status"]),
            )
            try:
                lms.call(lms.people.UpdatePerson, request, lms.hr, f"deactivating {person.external_id}")
                break
            except LmsError as failure:
                if failure.error.code != grpc.StatusCode.ABORTED:
                    raise
                person = lms.call(
                    lms.people.GetPerson, pb.person.GetPersonRequest(id=person.id), lms.hr, "re-reading a person"
                )
        else:
            raise SystemExit(f"could not deactivate {person.external_id}: its etag kept changing")
    names = sorted(person.external_id for person in leavers)
    print(f"leavers: {len(names)} deactivated {names}")
    return names


# ---- 4. programme team (admin) ------------------------------------------------------------------


def programme_team(lms: Lms, organisations: dict[str, str], roster: list[dict[str, str]], ids: dict[str, str]) -> None:
    """What a programme team does, so that the HR system has completions to read.

    Course -> version -> module -> activities -> publish; programme; cohort OPEN then RUNNING;
    the roster's people enrolled; progress for some of them (every third completes, every
    third is part-way); a certification track whose trainer course is this course, and a
    certificate for everyone who completed. Every call replays on a re-run.
    """
    pb = lms.pb
    ministry = organisations["HRX"]
    course = lms.call(
        lms.courses.CreateCourse,
        pb.course.CreateCourseRequest(
            course=pb.course.Course(
                code=COURSE_CODE, title="Digital skills for the public service", provider_organization_id=ministry
            ),
            request_id=stable_id("course", COURSE_CODE),
        ),
        lms.admin,
        "creating the course",
    )
    version = lms.call(
        lms.courses.CreateCourseVersion,
        pb.course.CreateCourseVersionRequest(course_id=course.id, request_id=stable_id("version", COURSE_CODE)),
        lms.admin,
        "creating a course version",
    )
    version = lms.call(
        lms.courses.GetCourseVersion, pb.course.GetCourseVersionRequest(id=version.id), lms.admin, "reading the version"
    )
    if version.state != pb.course.CourseVersionState.COURSE_VERSION_STATE_PUBLISHED:
        module = lms.call(
            lms.courses.CreateModule,
            pb.course.CreateModuleRequest(
                course_version_id=version.id,
                module=pb.course.Module(title="Working with data", required=True),
                request_id=stable_id("module", COURSE_CODE, 1),
            ),
            lms.admin,
            "creating a module",
        )
        plan = [
            ("Spreadsheets and open data", pb.course.ActivityKind.Value("ACTIVITY_KIND_SELF_STUDY"), None),
            ("Final quiz", pb.course.ActivityKind.Value("ACTIVITY_KIND_ASSESSMENT"), 70),
        ]
        for index, (title, kind, pass_score) in enumerate(plan):
            activity = pb.course.Activity(
                title=title,
                kind=kind,
                delivery_mode=pb.course.DeliveryMode.Value("DELIVERY_MODE_ONLINE"),
                required=True,
                expected_minutes=60,
            )
            if pass_score is not None:
                activity.pass_score = pass_score
            lms.call(
                lms.courses.CreateActivity,
                pb.course.CreateActivityRequest(
                    module_id=module.id, activity=activity, request_id=stable_id("activity", COURSE_CODE, 1, index)
                ),
                lms.admin,
                "creating an activity",
            )
        lms.call(
            lms.courses.PublishCourseVersion,
            pb.course.PublishCourseVersionRequest(id=version.id),
            lms.admin,
            "publishing",
        )
        version = lms.call(
            lms.courses.GetCourseVersion,
            pb.course.GetCourseVersionRequest(id=version.id),
            lms.admin,
            "reading the version",
        )
    activities = [
        activity
        for module in sorted(version.modules, key=lambda m: m.position)
        for activity in sorted(module.activities, key=lambda a: a.position)
    ]

    programme = lms.call(
        lms.programmes.CreateProgramme,
        pb.programme.CreateProgrammeRequest(
            programme=pb.programme.Programme(
                code=PROGRAMME_CODE,
                title="Digital public service",
                sponsor_organization_id=ministry,
                phases=[pb.programme.Phase(title="Foundations", course_version_ids=[version.id])],
            ),
            request_id=stable_id("programme", PROGRAMME_CODE),
        ),
        lms.admin,
        "creating the programme",
    )
    cohort = lms.call(
        lms.programmes.CreateCohort,
        pb.programme.CreateCohortRequest(
            cohort=pb.programme.Cohort(programme_id=programme.id, name="Cohort 1", capacity=100),
            request_id=stable_id("cohort", PROGRAMME_CODE, 1),
        ),
        lms.admin,
        "creating the cohort",
    )
    cohort = lms.call(
        lms.programmes.GetCohort, pb.programme.GetCohortRequest(id=cohort.id), lms.admin, "reading the cohort"
    )
    states = pb.programme.CohortState
    for target in (states.COHORT_STATE_OPEN, states.COHORT_STATE_RUNNING):
        if cohort.state < target:
            cohort = lms.call(
                lms.programmes.ChangeCohortState,
                pb.programme.ChangeCohortStateRequest(id=cohort.id, state=target, etag=cohort.etag),
                lms.admin,
                "moving the cohort on",
            )

    members = [ids[row["external_id"]] for row in roster if row["external_id"] in ids]
    enrol = pb.programme.BatchEnrollRequest(cohort_id=cohort.id, person_ids=members)
    enrol.request_id = content_id("enrol", enrol)
    answer = lms.call(lms.programmes.BatchEnroll, enrol, lms.admin, "enrolling")
    enrolments = {}
    for result in answer.results:
        if result.HasField("enrollment"):
            enrolments[result.person_id] = result.enrollment.id
    # People enrolled by an earlier run answer ALREADY_ENROLLED: read their enrolments instead.
    listing = pb.programme.ListEnrollmentsRequest(cohort_id=cohort.id)
    for enrolment in lms.pages(lms.programmes.ListEnrollments, listing, "enrollments", lms.admin):
        enrolments[enrolment.person_id] = enrolment.id
    print(f"programme team: course {COURSE_CODE} published, cohort RUNNING, {len(enrolments)} enrolled")

    events = []
    for row in roster:
        external_id = row["external_id"]
        enrolment_id = enrolments.get(ids.get(external_id, ""))
        if enrolment_id is None:
            continue
        done = planned_activities(external_id, len(activities))
        for index, activity in enumerate(activities[:done]):
            event = pb.progress.ProgressEvent(
                event_id=stable_id("progress", external_id, activity.id),
                enrollment_id=enrolment_id,
                activity_id=activity.id,
                duration_seconds=1800,
                occurred_time=pb.timestamp.Timestamp(seconds=1_767_225_600 + index * 3600),
                source=pb.progress.ProgressSource.PROGRESS_SOURCE_APP,
            )
            if activity.kind == pb.course.ActivityKind.Value("ACTIVITY_KIND_ASSESSMENT"):
                event.verb, event.score = pb.progress.ProgressVerb.PROGRESS_VERB_PASSED, 85
            else:
                event.verb = pb.progress.ProgressVerb.PROGRESS_VERB_COMPLETED
            events.append(event)
    if events:
        acks = lms.call(
            lms.progress.BatchRecordProgress,
            pb.progress.BatchRecordProgressRequest(events=events),
            lms.admin,
            "recording progress",
        ).acks
        refused = [ack for ack in acks if ack.HasField("error")]
        if refused:
            raise SystemExit(f"progress refused: {refused[0].error}")
        print(f"programme team: {len(events)} progress events recorded (replays change nothing)")

    track = ensure_track(lms, ministry, course.id, version.id)
    completed = [
        enrolment.person_id
        for enrolment in lms.pages(
            lms.programmes.ListEnrollments,
            pb.programme.ListEnrollmentsRequest(
                cohort_id=cohort.id, state=pb.programme.EnrollmentState.Value("ENROLLMENT_STATE_COMPLETED")
            ),
            "enrollments",
            lms.admin,
        )
    ]
    for person_id in completed:
        certify(lms, track.id, person_id)
    print(f"programme team: {len(completed)} completed, each holds a {TRACK_CODE} certificate")


def planned_activities(external_id: str, count: int) -> int:
    """How many activities a person has done: every third completes, every third is part-way."""
    number = int(external_id.rsplit("-", 1)[-1])
    return (count, 1, 0)[number % 3]


def ensure_track(lms: Lms, issuer: str, course_id: str, version_id: str) -> Any:
    """Creates the certification track (a replay returns it; ALREADY_EXISTS: found by code)."""
    pb = lms.pb
    request = pb.certification.CreateCertificationTrackRequest(
        track=pb.certification.CertificationTrack(
            code=TRACK_CODE,
            title="Digital champion",
            level=pb.certification.TrackLevel.TRACK_LEVEL_AMBASSADOR,
            qualifies_course_ids=[course_id],
            requirements=pb.certification.TrackRequirements(trainer_course_version_ids=[version_id]),
            validity_months=24,
            scope=pb.certification.TrackScope.TRACK_SCOPE_OWN_ORGANIZATION,
            issuer_organization_id=issuer,
        ),
        request_id=stable_id("track", TRACK_CODE),
    )
    try:
        return lms.call(lms.certification.CreateCertificationTrack, request, lms.admin, "creating the track")
    except LmsError as failure:
        if failure.error.code != grpc.StatusCode.ALREADY_EXISTS:
            raise
    listing = pb.certification.ListCertificationTracksRequest()
    for track in lms.pages(lms.certification.ListCertificationTracks, listing, "tracks", lms.admin):
        if track.code == TRACK_CODE:
            return track
    raise SystemExit(f"track {TRACK_CODE} exists but cannot be found")


def certify(lms: Lms, track_id: str, person_id: str) -> None:
    """Takes a candidacy through CANDIDATE -> TRAINING -> SUPERVISED_PRACTICE -> AWAITING_ASSESSMENT -> CERTIFIED."""
    pb = lms.pb
    states = pb.certification.CandidacyState
    candidacy = lms.call(
        lms.certification.CreateCandidacy,
        pb.certification.CreateCandidacyRequest(
            track_id=track_id, person_id=person_id, request_id=stable_id("candidacy", track_id, person_id)
        ),
        lms.admin,
        "opening a candidacy",
    )
    candidacy = lms.call(
        lms.certification.GetCandidacy,
        pb.certification.GetCandidacyRequest(id=candidacy.id),
        lms.admin,
        "reading a candidacy",
    )
    steps = {
        states.CANDIDACY_STATE_CANDIDATE: (lms.certification.StartTraining, pb.certification.StartTrainingRequest),
        states.CANDIDACY_STATE_TRAINING: (
            lms.certification.BeginSupervisedPractice,
            pb.certification.BeginSupervisedPracticeRequest,
        ),
        states.CANDIDACY_STATE_SUPERVISED_PRACTICE: (
            lms.certification.SubmitForAssessment,
            pb.certification.SubmitForAssessmentRequest,
        ),
    }
    while candidacy.state in steps:
        method, request_type = steps[candidacy.state]
        transition = request_type(id=candidacy.id, reason="course completed (HR sync example)", etag=candidacy.etag)
        candidacy = lms.call(method, transition, lms.admin, "moving a candidacy")
    if candidacy.state == states.CANDIDACY_STATE_AWAITING_ASSESSMENT:
        issue = pb.certification.IssueCertificateRequest(candidacy_id=candidacy.id, reason="every requirement met")
        lms.call(lms.certification.IssueCertificate, issue, lms.admin, "issuing a certificate")


# ---- 5. the feed (hr_service) -------------------------------------------------------------------

# FAILED_PRECONDITION reasons of WatchEvents that mean "your position is no good here".
FEED_RESYNC_REASONS = {"FEED_HISTORY_CHANGED", "CURSOR_BEYOND_HEAD", "CURSOR_EXPIRED"}


class State:
    """The HR system's own record of the feed, in a JSON file written atomically.

    `resume_token` names the last event processed (`<history>.<cursor>`); `completions` and
    `certificates` are what the HR system derived from the feed, by external id. `journal`
    lists every event id processed since `journal_from` (the example keeps it to prove there are
    no repeats and no gaps; a real system keeps only what it derived).
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "resume_token": "",
            "cursor": 0,
            "journal_from": "",
            "journal": [],
            "completions": {},
            "certificates": {},
            "runs": 0,
            "resyncs": 0,
        }
        if path.exists():
            self.data.update(json.loads(path.read_text()))

    def save(self) -> None:
        """Writes the state to a temporary file and renames it over the old one (never half-written)."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(temporary, self.path)


class Crash(Exception):
    """Raised by `follow_feed` after `--stop-after-events` events, as a crash would end the run."""


@dataclass
class Feed:
    """Follows `WatchEvents` from the stored resume token."""

    lms: Lms
    state: State
    ministry_id: str
    stop_after: int | None = None
    processed: int = 0

    def catch_up(self) -> int:
        """Processes every event after the stored position; returns how many.

        A position the feed cannot honour (the database was restored from a backup, the events
        after it were pruned, or it is past the head) answers FAILED_PRECONDITION: the HR system
        then resynchronises from a snapshot and watches on from the head the error names.
        """
        try:
            return self._read()
        except LmsError as failure:
            if (
                failure.error.code != grpc.StatusCode.FAILED_PRECONDITION
                or failure.error.reason not in FEED_RESYNC_REASONS
            ):
                raise
            resynchronise(self.lms, self.state, self.ministry_id, failure.error)
            return self._read()

    def _read(self) -> int:
        """Reads the feed until caught up, saving the state after each event; asserts its promises:
        the first event is the one right after the stored position, then one cursor after
        another, and no event processed before comes again."""
        pb, state = self.lms.pb, self.state
        seen = set(state.data["journal"])
        start = state.data["resume_token"]
        request = pb.event.WatchEventsRequest(resume_token=start, until_caught_up=True)
        count = 0
        stream = self.lms.events.WatchEvents(request, metadata=self.lms.hr, timeout=120)
        try:
            for event in stream:
                expected = state.data["cursor"] + 1
                assert event.cursor == expected, f"gap or repeat: cursor {event.cursor} after {expected - 1}"
                assert event.id not in seen, f"event {event.id} (cursor {event.cursor}) came twice"
                apply_event(event, state)
                seen.add(event.id)
                state.data["journal"].append(event.id)
                state.data["resume_token"], state.data["cursor"] = event.resume_token, event.cursor
                state.save()
                count += 1
                self.processed += 1
                if self.stop_after is not None and self.processed >= self.stop_after:
                    stream.cancel()
                    raise Crash(f"stopped after {self.processed} events at cursor {event.cursor} (simulated crash)")
        except grpc.RpcError as failure:
            raise LmsError("following the feed", read_error(failure)) from None
        print(f"feed: {count} events after {start or 'the start'}, now at {state.data['resume_token'] or 'the start'}")
        return count


def apply_event(event: Any, state: State) -> None:
    """What the HR system does with an event: records completions and certificates by external id.

    Events about a person carry the person's `person_external_id` (and their organisation's
    `organization_external_code`), so no lookup is needed.
    """
    if event.type == "programme.completed":
        state.data["completions"][event.person_external_id] = event.subject_id
    elif event.type == "certificate.issued":
        state.data["certificates"][event.person_external_id] = event.subject_id


def resynchronise(lms: Lms, state: State, ministry_id: str, error: RpcError) -> None:
    """Rebuilds the derived state from a snapshot, then positions the feed at the head the error names.

    The head is taken (from the refusal) before the snapshot is read, so nothing committed
    after it is missed: an event between the head and the snapshot is applied twice, which
    the derived state (completions and certificates by external id) absorbs.
    """
    head = error.metadata["head_resume_token"]
    print(f"feed: {error.reason}: resynchronising from a snapshot, then watching from {head}")
    people = people_of(lms, ministry_id)
    rows = read_records(lms, {person.external_id: person for person in people})
    state.data["completions"] = {key: row["completed"][0] for key, row in rows.items() if row["completed"]}
    state.data["certificates"] = {key: row["certificate_ids"][0] for key, row in rows.items() if row["certificate_ids"]}
    state.data.update(resume_token=head, cursor=int(error.metadata["head"]), journal_from=head, journal=[])
    state.data["resyncs"] += 1
    state.data["last_resync_reason"] = error.reason
    state.save()
    print(f"feed: snapshot of {len(people)} people, {len(state.data['completions'])} completions")


def verify_journal(lms: Lms, state: State) -> None:
    """Reads the feed again from where the journal starts and checks the journal is exactly it."""
    pb = lms.pb
    request = pb.event.WatchEventsRequest(resume_token=state.data["journal_from"], until_caught_up=True)
    everything = [event.id for event in lms.events.WatchEvents(request, metadata=lms.hr, timeout=120)]
    journal = state.data["journal"]
    assert journal == everything, f"journal of {len(journal)} events differs from the feed's {len(everything)}"
    print(f"feed: journal verified: {len(journal)} events over {state.data['runs']} runs, no repeat, no gap")


# ---- 6. completions and certificates by external id ---------------------------------------------


def read_records(lms: Lms, people: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Reads each person's enrolments, progress and certificates (people by external id)."""
    pb = lms.pb
    completed_state = pb.programme.EnrollmentState.Value("ENROLLMENT_STATE_COMPLETED")
    rows = {}
    for external_id, person in sorted(people.items()):
        enrolments = lms.pages(
            lms.programmes.ListEnrollments,
            pb.programme.ListEnrollmentsRequest(person_id=person.id),
            "enrollments",
            lms.hr,
        )
        progress = lms.pages(
            lms.progress.ListProgress, pb.progress.ListProgressRequest(person_id=person.id), "progress", lms.hr
        )
        certificates = list(
            lms.pages(
                lms.certification.ListCertificates,
                pb.certification.ListCertificatesRequest(person_id=person.id),
                "certificates",
                lms.hr,
            )
        )
        rows[external_id] = {
            "status": pb.person.PersonStatus.Name(person.status).removeprefix("PERSON_STATUS_"),
            "completed": [enrolment.programme_id for enrolment in enrolments if enrolment.state == completed_state],
            "percent": max((summary.percent_complete for summary in progress), default=0.0),
            "certificate_ids": [certificate.id for certificate in certificates],
            "certificates": [
                f"{certificate.verification_code} "
                + pb.certification.CertificateStatus.Name(certificate.status).removeprefix("CERTIFICATE_STATUS_")
                for certificate in certificates
            ],
        }
    return rows


def report(lms: Lms, external_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Looks people up by external id (`BatchLookupPeople`) and prints what they completed and hold."""
    rows = read_records(lms, lookup_people(lms, external_ids))
    print("report: external_id  status    done  percent  certificates")
    for external_id, row in rows.items():
        print(
            f"  {external_id:<10} {row['status']:<9} {len(row['completed']):>4}  {row['percent']:>6.1f}%"
            f"  {', '.join(row['certificates']) or '-'}"
        )
    return rows


# ---- errors, shown --------------------------------------------------------------------------------


def show_errors(lms: Lms, ministry_id: str) -> None:
    """Makes two refused calls on purpose and prints what the LMS says, as an integrator reads it."""
    pb = lms.pb
    bad = pb.person.BatchUpsertPeopleRequest(
        people=[
            pb.person.PersonRecord(
                external_id="HRX-BAD-1",
                full_name="Nobody",
                organization_external_code="NO-SUCH-UNIT",
                sector=pb.person.Sector.SECTOR_PUBLIC,
            )
        ]
    )
    response = lms.call(lms.people.BatchUpsertPeople, bad, lms.hr, "upserting a bad record")
    assert response.counts.failed == 1 and response.errors, "a record naming an unknown unit must be refused"
    error = response.errors[0]
    print(f"errors: a refused record: key={error.key} reason={error.reason} field={error.field}")
    person = people_of(lms, ministry_id)[0]
    try:
        lms.call(
            lms.people.UpdatePerson,
            pb.person.UpdatePersonRequest(
                person=pb.person.Person(id=person.id, external_id="CHANGED"),
                update_mask=pb.field_mask.FieldMask(paths=["external_id"]),
            ),
            lms.hr,
            "changing an external id",
        )
    except LmsError as failure:
        assert failure.error.code == grpc.StatusCode.INVALID_ARGUMENT, failure.error
        assert failure.error.reason, "every error carries an ErrorInfo reason"
        assert failure.error.field_violations, "INVALID_ARGUMENT names the field in a BadRequest"
        print(f"errors: a refused call: {failure.error}")
    else:
        raise AssertionError("changing external_id must be refused")


# ---- main -----------------------------------------------------------------------------------------


def channel_for(arguments: argparse.Namespace) -> grpc.Channel:
    """A plaintext channel, or TLS (and mTLS with a client certificate) when asked (docs/tls.md)."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if not arguments.tls_ca:
        return grpc.insecure_channel(arguments.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pathlib.Path(arguments.tls_ca).read_bytes(),
        private_key=pathlib.Path(arguments.tls_key).read_bytes() if arguments.tls_key else None,
        certificate_chain=pathlib.Path(arguments.tls_cert).read_bytes() if arguments.tls_cert else None,
    )
    return grpc.secure_channel(arguments.target, credentials, options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of the LMS")
    parser.add_argument("--roster", type=pathlib.Path, default=HERE / "roster.csv")
    parser.add_argument("--organisations", type=pathlib.Path, default=HERE / "organisations.csv")
    parser.add_argument(
        "--state", type=pathlib.Path, default=HERE / "state.json", help="feed position and derived state"
    )
    parser.add_argument("--proto", type=pathlib.Path, default=REPOSITORY / "proto")
    parser.add_argument("--stop-after-events", type=int, help="stop after N feed events, as a crash would")
    parser.add_argument("--expect-resume", action="store_true", help="fail unless the state file holds a position")
    parser.add_argument(
        "--expect-resync",
        nargs="?",
        const="any",
        metavar="REASON",
        help="fail unless the feed refuses the stored position (with this ErrorInfo reason)",
    )
    parser.add_argument("--expect-leavers", nargs="*", default=None, help="fail unless exactly these are deactivated")
    parser.add_argument(
        "--check", action="store_true", help="verify the journal against the feed, and the report against both"
    )
    parser.add_argument("--tls-ca", help="CA certificate (PEM) to verify the server with")
    parser.add_argument("--tls-cert", help="client certificate (PEM) for mTLS")
    parser.add_argument("--tls-key", help="client key (PEM) for mTLS")
    arguments = parser.parse_args()
    hr_token, admin_token = os.environ.get("LMS_HR_TOKEN"), os.environ.get("LMS_ADMIN_TOKEN")
    if not hr_token or not admin_token:
        parser.error("set LMS_HR_TOKEN (role hr_service) and LMS_ADMIN_TOKEN (role admin)")

    generate_stubs(arguments.proto)
    lms = Lms(Pb(), channel_for(arguments), hr_token, admin_token)
    state = State(arguments.state)
    if arguments.expect_resume and not state.data["resume_token"]:
        raise SystemExit(f"--expect-resume: {arguments.state} holds no resume token")
    state.data["runs"] += 1
    resyncs = state.data["resyncs"]

    organisations = ensure_organisations(lms, arguments.organisations)
    ministry = organisations["HRX"]
    feed = Feed(lms, state, ministry, arguments.stop_after_events)
    try:
        # Catch up first (a restored LMS is noticed before anything is sent to it), sync, catch up again.
        resumed_at = state.data["resume_token"]
        feed.catch_up()
        if arguments.expect_resume:
            print(f"feed: resumed after {resumed_at}: {feed.processed} new events, none seen before")
        if arguments.expect_resync:
            assert state.data["resyncs"] == resyncs + 1, "the feed should have refused the stored position"
            reason = state.data["last_resync_reason"]
            assert arguments.expect_resync in ("any", reason), f"refused with {reason}, not {arguments.expect_resync}"
        roster = read_roster(arguments.roster)
        ids = sync_roster(lms, roster)
        leavers = deactivate_leavers(lms, ministry, roster)
        if arguments.expect_leavers is not None:
            assert leavers == sorted(arguments.expect_leavers), (
                f"deactivated {leavers}, expected {arguments.expect_leavers}"
            )
        programme_team(lms, organisations, roster, ids)
        show_errors(lms, ministry)
        feed.catch_up()
    except Crash as crash:
        print(f"feed: {crash}")
        return 0
    state.save()
    rows = report(lms, sorted({row["external_id"] for row in roster} | set(leavers)))
    if arguments.check:
        verify_journal(lms, state)
        completed = {external_id for external_id, row in rows.items() if row["completed"]}
        certified = {external_id for external_id, row in rows.items() if row["certificates"]}
        assert completed, "someone must have completed"
        assert completed == set(state.data["completions"]), (
            f"completions read {sorted(completed)} differ from the feed's {sorted(state.data['completions'])}"
        )
        assert certified == set(state.data["certificates"]) == completed, "every completer holds one certificate"
        print(f"check: {len(completed)} completions and certificates, the same by the API and by the feed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LmsError as failure:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(1)

/**
 * Typed google.rpc error details. The server attaches them to every refusal (see
 * docs/errors.md): `ErrorInfo` always (its `reason` is stable, UPPER_SNAKE_CASE, and is what
 * code should branch on), `BadRequest` with the offending fields for INVALID_ARGUMENT,
 * `PreconditionFailure` for FAILED_PRECONDITION and ABORTED (stale etag), `ResourceInfo` for
 * NOT_FOUND and ALREADY_EXISTS.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
  type ErrorInfo,
  type ResourceInfo,
} from "./gen/google/rpc/error_details_pb.js";

/** One field of a request that the server refused (`google.rpc.BadRequest.FieldViolation`). */
export interface FieldViolation {
  /** Path of the field in the request, e.g. `organization.name`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/** One unmet precondition (`google.rpc.PreconditionFailure.Violation`). */
export interface PreconditionViolation {
  /** Kind of precondition, e.g. `ETAG` or a reason such as `COHORT_FULL`. */
  type: string;
  /** What it is about, e.g. `cohort/0190...`. */
  subject: string;
  /** What failed. */
  description: string;
}

/** What an error says, read from a `ConnectError` (or anything thrown by a call). */
export interface LmsErrorDetails {
  /** The status code (`Code.Unauthenticated`, `Code.InvalidArgument`, ...). */
  code: Code;
  /** The status message, without the `[code]` prefix connect-es adds to `message`. */
  message: string;
  /** `ErrorInfo.reason`, e.g. `ROLE_NOT_ALLOWED`, `COHORT_FULL`; `""` when absent. */
  reason: string;
  /** `ErrorInfo.domain`: `lms.v1` for the server's own errors; `""` when absent. */
  domain: string;
  /** `ErrorInfo.metadata`: the dynamic values of the failure (ids, fields, resume tokens). */
  metadata: Record<string, string>;
  /** The whole `ErrorInfo`, when the error carries one. */
  errorInfo?: ErrorInfo;
  /** `BadRequest.field_violations`: the offending request fields. */
  fieldViolations: FieldViolation[];
  /** `PreconditionFailure.violations`. */
  preconditionViolations: PreconditionViolation[];
  /** `ResourceInfo`: the resource not found, or already there. */
  resourceInfo?: ResourceInfo;
  /** The server's `x-request-id` of the call, to quote when asking for help; `""` when absent. */
  requestId: string;
}

/**
 * Reads the status and the google.rpc details of an error thrown by a call. Anything that is not
 * a `ConnectError` (a network failure, a bug) is converted with `ConnectError.from`, so the
 * result always has a code.
 */
export function errorDetails(error: unknown): LmsErrorDetails {
  const connectError = ConnectError.from(error);
  const errorInfo = connectError.findDetails(ErrorInfoSchema)[0];
  const fieldViolations = connectError
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations)
    .map(({ field, description }) => ({ field, description }));
  const preconditionViolations = connectError
    .findDetails(PreconditionFailureSchema)
    .flatMap((failure) => failure.violations)
    .map(({ type, subject, description }) => ({ type, subject, description }));
  return {
    code: connectError.code,
    message: connectError.rawMessage,
    reason: errorInfo?.reason ?? "",
    domain: errorInfo?.domain ?? "",
    metadata: { ...(errorInfo?.metadata ?? {}) },
    errorInfo,
    fieldViolations,
    preconditionViolations,
    resourceInfo: connectError.findDetails(ResourceInfoSchema)[0],
    requestId: connectError.metadata.get("x-request-id") ?? "",
  };
}

/** Returns the name of `code` as gRPC spells it, e.g. `PERMISSION_DENIED`. */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

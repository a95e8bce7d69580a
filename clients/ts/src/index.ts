/**
 * The LMS API client: every message and service of `lms.v1` (generated from proto/ by
 * protoc-gen-es, see buf.gen.yaml), the google.rpc error details, a gRPC-Web transport that sends
 * a token, and `errorDetails` to read why a call was refused.
 *
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { ProgrammeService, createLmsTransport } from "@lms/client";
 * const transport = createLmsTransport({ baseUrl: "https://lms.example.gov.my", token });
 * const programmes = createClient(ProgrammeService, transport);
 * ```
 */
export { createLmsTransport, tokenInterceptor } from "./transport.js";
export type { LmsTransportOptions, TokenSource } from "./transport.js";
export { codeName, errorDetails } from "./errors.js";
export type { FieldViolation, LmsErrorDetails, PreconditionViolation } from "./errors.js";
export * from "./gen/google/rpc/error_details_pb.js";
export * from "./gen/google/rpc/status_pb.js";
export * from "./gen/lms/v1/audit_service_pb.js";
export * from "./gen/lms/v1/certification_service_pb.js";
export * from "./gen/lms/v1/competency_service_pb.js";
export * from "./gen/lms/v1/common_pb.js";
export * from "./gen/lms/v1/course_service_pb.js";
export * from "./gen/lms/v1/delivery_service_pb.js";
export * from "./gen/lms/v1/event_service_pb.js";
export * from "./gen/lms/v1/organization_service_pb.js";
export * from "./gen/lms/v1/person_service_pb.js";
export * from "./gen/lms/v1/programme_service_pb.js";
export * from "./gen/lms/v1/progress_service_pb.js";
export * from "./gen/lms/v1/report_service_pb.js";
export * from "./gen/lms/v1/selection_service_pb.js";
export * from "./gen/lms/v1/survey_service_pb.js";

/**
 * Transports for the LMS API. The server speaks gRPC and gRPC-Web, not the Connect protocol:
 * connect-es's default `createConnectTransport` gets HTTP 400, so every transport here is a
 * gRPC-Web one.
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

/**
 * A bearer token, or a function returning the current one (called before every call, so a
 * refreshed token is picked up); `undefined` or `""` sends no `authorization` header.
 */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

/** Returns an interceptor that sends `authorization: Bearer <token>` with every call. */
export function tokenInterceptor(token: TokenSource): Interceptor {
  return (next) => async (request) => {
    const value = typeof token === "function" ? await token() : token;
    if (value) {
      request.header.set("authorization", `Bearer ${value}`);
    }
    return next(request);
  };
}

/** Options of {@link createLmsTransport}. */
export interface LmsTransportOptions {
  /** The server's address, e.g. `https://lms.example.gov.my` (no trailing path). */
  baseUrl: string;
  /** The caller's token; see {@link TokenSource}. */
  token?: TokenSource;
  /** Further interceptors, run after the token interceptor. */
  interceptors?: Interceptor[];
  /** Default deadline of every call, in milliseconds (sent as `grpc-timeout`). */
  defaultTimeoutMs?: number;
  /** A `fetch` to use instead of the global one (e.g. to set `credentials`). */
  fetch?: typeof globalThis.fetch;
}

/**
 * Returns a gRPC-Web transport (binary format) to the LMS server, sending the token with every
 * call. Works in browsers and anywhere `fetch` streams responses (Node 18 and later).
 */
export function createLmsTransport(options: LmsTransportOptions): Transport {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(tokenInterceptor(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));
  return createGrpcWebTransport({
    baseUrl: options.baseUrl,
    useBinaryFormat: true,
    interceptors,
    defaultTimeoutMs: options.defaultTimeoutMs,
    fetch: options.fetch,
  });
}

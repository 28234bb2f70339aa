import { driverCode } from '@astra/outbox';
import type { FastifyError, FastifyInstance } from 'fastify';

/**
 * An error a client can act on. Every error body has the same shape:
 * `{ "error": { "code": "...", "message": "...", "field": "..." | null } }`.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { code: string; message: string; field: string | null };
}

export function errorBody(code: string, message: string, field: string | null = null): ErrorBody {
  return { error: { code, message, field } };
}

interface AjvError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** What a client should hear about the first schema violation, with the field it concerns. */
function describeValidation(error: AjvError, context: string, rules: Record<string, string>): ApiError {
  const path = error.instancePath.replace(/^\//, '').replaceAll('/', '.');
  switch (error.keyword) {
    case 'required':
      return new ApiError(
        400,
        'MISSING_FIELD',
        `${String(error.params.missingProperty)} is required`,
        String(error.params.missingProperty),
      );
    case 'additionalProperties':
      return new ApiError(
        400,
        'UNKNOWN_FIELD',
        `${String(error.params.additionalProperty)} is not a known field`,
        String(error.params.additionalProperty),
      );
    case 'type':
      if (path === '') return new ApiError(400, 'INVALID_BODY', `the ${context} must be a JSON object`);
      return new ApiError(400, 'INVALID_FIELD', `${path} must be a ${String(error.params.type)}`, path);
    default: {
      const rule = rules[path];
      if (rule !== undefined) return new ApiError(400, 'INVALID_FIELD', `${path} ${rule}`, path);
      return new ApiError(
        400,
        'INVALID_FIELD',
        `${path || context} ${error.message ?? 'is invalid'}`,
        path || null,
      );
    }
  }
}

/** Fastify's own client errors, by their FST_ codes. */
const FASTIFY_CLIENT_ERRORS: Record<string, [number, string, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'MALFORMED_JSON', 'the body is not valid JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'MALFORMED_JSON', 'the body is empty'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'BODY_TOO_LARGE', 'the body is larger than allowed'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE', 'send application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [
    400,
    'INVALID_CONTENT_LENGTH',
    'content-length does not match the body',
  ],
};

/**
 * Connection-level failures (refused, reset, terminated by the server), an exhausted pool, and
 * statements or lock waits cut short by their timeouts: the client may retry. pg's code is read bare
 * or from an OutboxError's cause (the library wraps what its own queries throw).
 */
function isUnavailable(error: { code?: string; message?: string }): boolean {
  const code = driverCode(error) ?? '';
  return (
    code.startsWith('08') || // connection exception class
    code.startsWith('57P') || // admin shutdown, crash shutdown, cannot connect now
    code === '57014' || // statement_timeout (query_canceled)
    code === '55P03' || // lock_timeout (lock_not_available)
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code) ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
      error.message ?? '',
    )
  );
}

/**
 * `fieldRules` gives the message for a field whose value breaks its pattern, by field name.
 * `onDatabaseUnavailable` is called instead of logging each request the database failed: the caller
 * logs the outage once (OutageLog), not once per request. Without it each one is logged.
 */
export function registerErrorHandling(
  app: FastifyInstance,
  fieldRules: Record<string, string> = {},
  onDatabaseUnavailable?: (error: Error) => void,
): void {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      return reply.status(error.statusCode).send(errorBody(error.code, error.message, error.field));
    }
    const first = error.validation?.[0] as AjvError | undefined;
    if (first !== undefined) {
      const context = error.validationContext ?? 'body';
      const described = describeValidation(first, context, fieldRules);
      const code = context === 'headers' ? 'INVALID_HEADER' : described.code;
      return reply.status(described.statusCode).send(errorBody(code, described.message, described.field));
    }
    const known = error.code === undefined ? undefined : FASTIFY_CLIENT_ERRORS[error.code];
    if (known !== undefined) return reply.status(known[0]).send(errorBody(known[1], known[2]));
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send(errorBody(error.code ?? 'BAD_REQUEST', error.message));
    }
    if (isUnavailable(error)) {
      if (onDatabaseUnavailable === undefined) request.log.warn({ err: error }, 'database unavailable');
      else onDatabaseUnavailable(error);
      return reply.status(503).send(errorBody('UNAVAILABLE', 'the database is unavailable; retry later'));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send(errorBody('INTERNAL', 'the service failed to complete the request'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}

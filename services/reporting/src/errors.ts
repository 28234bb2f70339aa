import { driverCode } from '@astra/outbox';
import type { FastifyError, FastifyInstance } from 'fastify';

/** An error a client can act on; every error body is `{ "error": { "code", "message", "field" } }`. */
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

export const errorBody = (code: string, message: string, field: string | null = null) => ({
  error: { code, message, field },
});

/**
 * Connection-level failures (refused, reset, terminated by the server): the client may retry. pg's
 * code is read bare or from an OutboxError's cause.
 */
function isUnavailable(error: { code?: string; message?: string }): boolean {
  const code = driverCode(error) ?? '';
  return (
    code.startsWith('08') ||
    code.startsWith('57P') ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code) ||
    /Connection terminated|connection timeout|Client has encountered a connection error/i.test(
      error.message ?? '',
    )
  );
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError)
      return reply.status(error.statusCode).send(errorBody(error.code, error.message, error.field));
    const first = error.validation?.[0];
    if (first !== undefined) {
      const path = first.instancePath.replace(/^\//, '').replaceAll('/', '.');
      const field =
        path === '' ? ((first.params as { missingProperty?: string }).missingProperty ?? null) : path;
      return reply
        .status(400)
        .send(
          errorBody(
            'INVALID_FIELD',
            `${field ?? error.validationContext ?? 'request'} ${first.message ?? 'is invalid'}`,
            field,
          ),
        );
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500)
      return reply.status(error.statusCode).send(errorBody(error.code ?? 'BAD_REQUEST', error.message));
    if (isUnavailable(error)) {
      request.log.warn({ err: error }, 'database unavailable');
      return reply.status(503).send(errorBody('UNAVAILABLE', 'the database is unavailable; retry later'));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send(errorBody('INTERNAL', 'the service failed to complete the request'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}

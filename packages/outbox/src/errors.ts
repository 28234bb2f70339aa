/**
 * Every error the library throws is an OutboxError with a stable `code`, so callers can branch on
 * the code and log the `cause` without parsing messages. Failures of PostgreSQL or Redis keep the
 * driver's error as `cause`: pg's SQLSTATE is `cause.code`, and `driverCode()` reads it.
 */
export type OutboxErrorCode =
  | 'OUTBOX_INVALID_OPTION'
  | 'OUTBOX_INVALID_EVENT'
  | 'OUTBOX_EVENT_NOT_FOUND'
  /** write(): an event id already in the outbox (unique_violation on event_id). */
  | 'OUTBOX_DUPLICATE_EVENT'
  /** A statement failed in PostgreSQL or the connection did. */
  | 'OUTBOX_DATABASE_ERROR'
  /** Redis did not answer within the call's timeout. */
  | 'OUTBOX_BROKER_TIMEOUT'
  /** Redis refused a call, the connection failed, or the broker refused events. */
  | 'OUTBOX_BROKER_ERROR';

export class OutboxError extends Error {
  override readonly name = 'OutboxError';
  readonly code: OutboxErrorCode;
  /** The option or event field at fault, when there is one. */
  readonly field: string | undefined;

  constructor(code: OutboxErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.field = options.field;
  }
}

export function invalidOption(field: string, message: string): OutboxError {
  return new OutboxError('OUTBOX_INVALID_OPTION', `${field}: ${message}`, { field });
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * The code a driver gave an error: pg's SQLSTATE ('40001') or a socket's ('ECONNREFUSED'), whether
 * the error is bare or the cause of an OutboxError, so retry and 503 rules read both the same way.
 */
export function driverCode(error: unknown): string | undefined {
  const source = error instanceof OutboxError ? error.cause : error;
  const code =
    typeof source === 'object' && source !== null ? (source as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** A failed database call as an OutboxError, keeping pg's error (and its SQLSTATE) as the cause. */
export function databaseError(error: unknown): OutboxError {
  if (error instanceof OutboxError) return error;
  const constraint = (error as { constraint?: unknown } | null)?.constraint;
  if (driverCode(error) === '23505' && typeof constraint === 'string' && constraint.endsWith('_event_id_key'))
    return new OutboxError(
      'OUTBOX_DUPLICATE_EVENT',
      `an event id is in the outbox already: ${messageOf(error)}`,
      {
        field: 'id',
        cause: error,
      },
    );
  return new OutboxError('OUTBOX_DATABASE_ERROR', messageOf(error), { cause: error });
}

/** A failed Redis call as an OutboxError with the same message, keeping node-redis's error as the cause. */
export function brokerError(error: unknown): OutboxError {
  if (error instanceof OutboxError) return error;
  return new OutboxError('OUTBOX_BROKER_ERROR', messageOf(error), { cause: error });
}

/** Redis did not answer in time. */
export function brokerTimeout(ms: number): OutboxError {
  return new OutboxError('OUTBOX_BROKER_TIMEOUT', `Redis did not answer within ${ms} ms`);
}

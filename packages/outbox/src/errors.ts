/**
 * Every error the library throws is an OutboxError with a stable `code`, so callers can branch on
 * the code and log the `cause` without parsing messages.
 */
export type OutboxErrorCode = 'OUTBOX_INVALID_OPTION' | 'OUTBOX_INVALID_EVENT' | 'OUTBOX_EVENT_NOT_FOUND';

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

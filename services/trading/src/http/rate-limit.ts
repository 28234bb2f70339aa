import { ApiError } from '@astra/service-support';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';

export interface RateLimits {
  /** Requests per API key per window, counted after authentication; 0 = no limit. */
  perKey: number;
  /** Requests per client address per window whose key is not known yet; 0 = no limit. */
  perAddress: number;
  windowMs: number;
}

/** Registers the limiter's store (in memory, per process); the hooks come from limitBy(). */
export async function registerRateLimit(app: FastifyInstance): Promise<void> {
  // Least recently used keys and addresses are forgotten first: a flood of addresses cannot grow memory.
  await app.register(rateLimit, { global: false, cache: 20_000 });
}

/**
 * An onRequest hook counting requests by `keyOf`; past `max` per window it answers 429 with
 * Retry-After. `skip` exempts requests (and does not count them).
 */
export function limitBy(
  app: FastifyInstance,
  options: {
    max: number;
    windowMs: number;
    keyOf: (request: FastifyRequest) => string;
    skip?: (request: FastifyRequest) => boolean;
    what: string;
  },
): onRequestAsyncHookHandler {
  const check = app.createRateLimit({
    max: options.max,
    timeWindow: options.windowMs,
    keyGenerator: options.keyOf,
    ...(options.skip === undefined ? {} : { allowList: options.skip }),
  });
  return async (request, reply) => {
    const result = await check(request);
    if (result.isAllowed || !result.isExceeded) return;
    const seconds = Math.max(1, result.ttlInSeconds);
    reply.header('retry-after', String(seconds));
    throw new ApiError(429, 'RATE_LIMITED', `too many requests ${options.what}; retry in ${seconds} s`);
  };
}

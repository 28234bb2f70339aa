/**
 * Bench-only: the design the outbox replaced, for comparison. The same POST /v1/trades (same schema,
 * authentication, trade statement, pool size and request metrics as the service) minus the events in
 * the statement: it commits the trade, then XADDs both events straight to Redis. An event is lost when the process dies
 * or Redis fails between the commit and the XADD, which is why the service does not do this.
 * Env: PORT, DATABASE_URL, REDIS_URL, DB_POOL_SIZE (default 10, as the service).
 */
import { newEventId } from '@astra/outbox';
import { entryFieldValues } from '@astra/outbox/consumer';
import { ApiError, registerErrorHandling } from '@astra/service-support';
import { createPool } from '@astra/trading-service/database';
import { ApiKeyVerifier, authorize } from '@astra/trading-service/http/auth';
import { registerHttpMetrics } from '@astra/trading-service/metrics';
import {
  POSITION_UPDATED,
  positionUpdatedData,
  TRADE_EXECUTED,
  tradeExecutedData,
} from '@astra/trading-service/trades/events';
import { ErrorResponse, FIELD_RULES, TradeRequest, TradeResult } from '@astra/trading-service/trades/schema';
import { newTradeId, type TradeRow, tradeQuery } from '@astra/trading-service/trades/sql';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { createClient } from '@redis/client';
import Fastify, { LogController } from 'fastify';
import { Registry } from 'prom-client';

const SOURCE = '/astra/trading-service';

function cloudEventFields(type: string, subject: string, time: string, data: unknown): string[] {
  return entryFieldValues({
    eventId: newEventId(),
    type,
    source: SOURCE,
    aggregateId: subject,
    time,
    data: JSON.stringify(data),
  });
}

async function main(): Promise<void> {
  const pool = createPool(process.env.DATABASE_URL ?? '', Number(process.env.DB_POOL_SIZE ?? 10));
  const redis = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
  redis.on('error', () => {});
  await redis.connect();
  const keys = new ApiKeyVerifier(pool);

  const app = Fastify({
    logger: false,
    bodyLimit: 16 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  registerErrorHandling(app, FIELD_RULES);
  registerHttpMetrics(app, new Registry());
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.post(
    '/v1/trades',
    { schema: { body: TradeRequest, response: { 201: TradeResult, 400: ErrorResponse } } },
    async (request, reply) => {
      const principal = await keys.authenticate(request);
      authorize(principal, request.body.accountId);
      const { accountId, symbol, side, quantity, price } = request.body;
      const tradeId = newTradeId();
      // One statement, committed on its own, as the service's (minus the events).
      const row = (
        await pool.query<TradeRow>(tradeQuery({ tradeId, accountId, symbol, side, quantity, price }))
      ).rows[0];
      if (row === undefined)
        throw new ApiError(422, 'INSUFFICIENT_POSITION', 'cannot sell more than held', 'quantity');
      const { trade, position } = row;
      const time = trade.executedAt;
      // After the commit: the window in which a crash loses the events.
      await Promise.all([
        redis.sendCommand([
          'XADD',
          TRADE_EXECUTED,
          '*',
          ...cloudEventFields(TRADE_EXECUTED, tradeId, time, tradeExecutedData(trade)),
        ]),
        redis.sendCommand([
          'XADD',
          POSITION_UPDATED,
          '*',
          ...cloudEventFields(
            POSITION_UPDATED,
            `${accountId}:${symbol}`,
            time,
            positionUpdatedData(position, tradeId),
          ),
        ]),
      ]);
      return reply.status(201).send({ trade, position });
    },
  );

  await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3100) });
  const close = () => {
    void app
      .close()
      .then(() => pool.end())
      .finally(() => {
        redis.destroy();
        process.exit(0);
      });
  };
  process.on('SIGTERM', close);
  process.on('SIGINT', close);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `direct-publish-server failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});

import {
  createTraceState,
  type Link,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { isValidTraceparent } from './cloudevents.ts';
import type { PublishableEvent, Publisher } from './publisher.ts';

/** A stored W3C trace context as an OpenTelemetry span context, or undefined when there is none. */
export function storedSpanContext(
  traceparent: string | null,
  tracestate: string | null,
): SpanContext | undefined {
  if (traceparent === null || !isValidTraceparent(traceparent)) return undefined;
  const [, traceId, spanId, flags] = traceparent.split('-') as [string, string, string, string];
  return {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16),
    isRemote: true,
    ...(tracestate === null ? {} : { traceState: createTraceState(tracestate) }),
  };
}

/**
 * A Publisher whose every publish call is one PRODUCER span, linked to the trace context stored with
 * each event: a batch carries events of many requests, so they are links, not parents. The relay is
 * unchanged; pass the wrapped publisher to it. Without a tracer provider the API's no-op tracer makes
 * this cost a few calls per batch.
 */
export function tracedPublisher(publisher: Publisher, tracer: Tracer): Publisher {
  return {
    async publish(events: readonly PublishableEvent[], options?: Parameters<Publisher['publish']>[1]) {
      const links: Link[] = [];
      for (const event of events) {
        const context = storedSpanContext(event.traceparent, event.tracestate);
        if (context !== undefined) {
          links.push({ context, attributes: { 'messaging.message.id': event.eventId } });
        }
      }
      const span = tracer.startSpan('outbox publish', {
        kind: SpanKind.PRODUCER,
        links,
        attributes: { 'messaging.operation.type': 'send', 'messaging.batch.message_count': events.length },
      });
      try {
        const outcomes = await publisher.publish(events, options);
        const failed = outcomes.filter((o) => o.status === 'rejected' || o.status === 'unavailable').length;
        span.setAttribute('outbox.published', outcomes.filter((o) => o.status === 'published').length);
        if (failed > 0)
          span.setStatus({ code: SpanStatusCode.ERROR, message: `${failed} events not published` });
        return outcomes;
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
        throw error;
      } finally {
        span.end();
      }
    },
    check: (...args) => publisher.check(...args),
    stream: (type) => publisher.stream(type),
    confirm: (events) => publisher.confirm(events),
    ping: () => publisher.ping(),
    close: () => publisher.close(),
  };
}

import { isValidTracestate, storedSpanContext } from '@astra/outbox';
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';

export interface Tracing {
  tracer: Tracer;
  /** Flushes the spans still buffered. */
  shutdown(): Promise<void>;
}

/**
 * OpenTelemetry traces exported over OTLP/HTTP to `endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT), or
 * nothing at all without one: no tracer means no hooks and no spans, not no-op spans.
 */
export function startTracing(endpoint: string | undefined, serviceName: string): Tracing | undefined {
  if (endpoint === undefined) return undefined;
  const exporter = new OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  return { tracer: provider.getTracer('astra-trading'), shutdown: () => provider.shutdown() };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's SERVER span while tracing is on. */
    span: Span | null;
  }
}

/**
 * One SERVER span per request, a child of the caller's valid `traceparent` (with its valid
 * `tracestate`), ended with the route and status once the response is sent.
 */
export function registerRequestSpans(app: FastifyInstance, tracer: Tracer): void {
  app.decorateRequest('span', null);
  app.addHook('onRequest', async (request) => {
    const { traceparent, tracestate } = request.headers;
    const remote = storedSpanContext(
      typeof traceparent === 'string' ? traceparent : null,
      typeof tracestate === 'string' && isValidTracestate(tracestate) ? tracestate : null,
    );
    const parent = remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote);
    request.span = tracer.startSpan(
      request.method,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method } },
      parent,
    );
  });
  app.addHook('onResponse', async (request, reply) => {
    const { span } = request;
    if (span === null) return;
    const route = request.routeOptions.url;
    if (route !== undefined) {
      span.updateName(`${request.method} ${route}`);
      span.setAttribute('http.route', route);
    }
    span.setAttribute('http.response.status_code', reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
}

/** The context to start a request's child spans in, when tracing is on. */
export function requestContext(span: Span | null): Context | undefined {
  return span === null ? undefined : trace.setSpan(ROOT_CONTEXT, span);
}

/** A span's own W3C traceparent: what the events it wrote carry, so the relay's span links to it. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

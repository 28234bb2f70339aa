import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { invalidOption, OutboxError } from './errors.ts';

export interface MetricsServerOptions {
  /** Served at GET /metrics. */
  registry: Registry;
  /** Address to bind. Metrics reveal volumes and versions: keep it off public interfaces. */
  host: string;
  /** 0 picks a free port: read the bound one from the result. */
  port: number;
  /**
   * What errors call the port, e.g. the environment variable it came from.
   * @defaultValue 'port'
   */
  portName?: string;
  /**
   * Served at GET /healthz when given: 200 while `ok`, 503 otherwise, `body` as JSON.
   * @defaultValue none: /healthz is not served
   */
  health?: () => { ok: boolean; body: Record<string, unknown> };
}

export interface MetricsServer {
  /** The bound port (the chosen one when `port` was 0). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A listener of its own for Prometheus, apart from a service's API: plain node:http, so a process with
 * no HTTP framework (a relay, a consumer) can serve its metrics. A port in use, or one it may not bind,
 * rejects with a one-line OUTBOX_INVALID_OPTION naming `portName`.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, host, port, health } = options;
  const portName = options.portName ?? 'port';
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw invalidOption(portName, `must be a whole number from 0 to 65535, got ${String(port)}`);
  if (typeof host !== 'string' || host === '') throw invalidOption('host', 'must be a host name or address');

  const answer = async (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      try {
        const text = await registry.metrics();
        response.writeHead(200, { 'content-type': registry.contentType }).end(text);
      } catch (error) {
        response
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics failed: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    } else if (path === '/healthz' && health !== undefined) {
      const state = health();
      response
        .writeHead(state.ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify(state.body));
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  };
  const server = createServer((request, response) => void answer(request, response));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EADDRINUSE')
      throw new OutboxError(
        'OUTBOX_INVALID_OPTION',
        `${portName}: ${host}:${port} is in use (another process listens there; ${portName}=0 picks a free port)`,
        { field: portName, cause: error },
      );
    throw new OutboxError(
      'OUTBOX_INVALID_OPTION',
      `${portName}: cannot listen on ${host}:${port} (${code ?? (error as Error).message})`,
      { field: portName, cause: error },
    );
  }
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    // Node 20's close() also ends idle keep-alive connections (Prometheus keeps its scrapes alive).
    close: () =>
      new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}

import { Agent, type IncomingHttpHeaders, type OutgoingHttpHeaders, request } from 'node:http';

export interface HttpRequest {
  method: string;
  /** Sent as it is (no normalisation of `..` or encoding), so hostile paths reach the server. */
  path: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Buffer;
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request that got no HTTP answer: `code` is the socket error code, or TIMEOUT. */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * HTTP/1.1 over keep-alive loopback connections with node:http, which sends paths and headers as
 * given (fetch would normalise them). At most `maxSockets` requests are on the wire at once.
 */
export class HttpClient {
  private readonly agent: Agent;
  private readonly defaultTimeoutMs: number;

  constructor(
    readonly port: number,
    options: { maxSockets?: number; defaultTimeoutMs?: number } = {},
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 16 });
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 10_000;
  }

  send(req: HttpRequest): Promise<HttpResponse> {
    const timeoutMs = req.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        const code = (error as { code?: unknown }).code;
        reject(
          error instanceof NoAnswerError
            ? error
            : new NoAnswerError(
                typeof code === 'string' ? code : 'ERROR',
                error instanceof Error ? error.message : String(error),
              ),
        );
      };
      const outgoing = request(
        {
          host: '127.0.0.1',
          port: this.port,
          method: req.method,
          path: req.path,
          // An explicit length frames the body for every method: node:http would send a GET's or
          // DELETE's body unframed, and the server would read it as the next request.
          headers:
            req.body === undefined
              ? req.headers
              : { 'content-length': Buffer.byteLength(req.body), ...req.headers },
          agent: this.agent,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', fail);
          response.on('end', () => {
            if (settled) return;
            settled = true;
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            });
          });
        },
      );
      outgoing.setTimeout(timeoutMs, () => {
        outgoing.destroy(new NoAnswerError('TIMEOUT', `no answer within ${timeoutMs} ms`));
      });
      outgoing.on('error', fail);
      outgoing.end(req.body);
    });
  }

  /** POSTs `body` as JSON. */
  postJson(
    path: string,
    body: unknown,
    headers: OutgoingHttpHeaders = {},
    timeoutMs?: number,
  ): Promise<HttpResponse> {
    return this.send({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

// A WebSocket client for tests of the stream endpoint: records every message
// and lets a test wait for the one it expects.
import WebSocket from 'ws';

export interface CloseEvent {
  code: number;
  reason: string;
}

export class TestStreamClient {
  readonly messages: any[] = [];
  readonly closed: Promise<CloseEvent>;
  #waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      this.messages.push(isBinary ? bytes : JSON.parse(bytes.toString('utf8')));
      this.#wake();
    });
    // A socket error is followed by 'close'; the test asserts on the close code.
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.#wake();
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  static open(url: string, options: WebSocket.ClientOptions = {}): Promise<TestStreamClient> {
    const ws = new WebSocket(url, options);
    const client = new TestStreamClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_request, response) =>
        reject(new Error(`upgrade rejected with ${response.statusCode}`)),
      );
      ws.once('error', reject);
    });
  }

  /** Tries an upgrade that the server is expected to reject; resolves with the status and body. */
  static reject(
    url: string,
    options: WebSocket.ClientOptions = {},
  ): Promise<{ status: number; body: any }> {
    const ws = new WebSocket(url, options);
    ws.on('error', () => undefined);
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.close();
        reject(new Error(`upgrade to ${url} was accepted`));
      });
      ws.once('unexpected-response', (_request, response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        });
      });
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  sendFrame(bytes: Buffer, header?: { frame_id?: number | string; timestamp?: number }): void {
    if (header) this.send({ type: 'frame', ...header });
    this.ws.send(bytes);
  }

  results(): any[] {
    return this.messages.filter((message) => message.type === 'result');
  }

  /** Resolves with the first message, old or new, that matches; rejects after `timeoutMs`. */
  async waitFor(predicate: (message: any) => boolean, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(predicate);
      if (found !== undefined) return found;
      if (this.ws.readyState === WebSocket.CLOSED)
        throw new Error(`connection closed while waiting; got ${JSON.stringify(this.messages)}`);
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0)
        throw new Error(`no matching message within ${timeoutMs} ms; got ${this.summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a frame and waits for the result or error carrying its id. */
  async request(bytes: Buffer, frameId: number | string, timeoutMs?: number): Promise<any> {
    this.sendFrame(bytes, { frame_id: frameId });
    return this.waitFor((message) => message.frame_id === frameId, timeoutMs);
  }

  async close(): Promise<CloseEvent> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    return this.closed;
  }

  summary(): string {
    return JSON.stringify(
      this.messages
        .slice(-5)
        .map((message) =>
          message.type === 'result'
            ? { type: 'result', frame_id: message.frame_id, dropped: message.dropped }
            : message,
        ),
    );
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

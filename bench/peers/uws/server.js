// The uWebSockets.js peer of `herald-bench compare` (and `conns`/`fanout --system uws`).
//
//   node bench/peers/uws/server.js --listen 127.0.0.1:0 [--lifeline]
//
// One `App()` (plaintext), two WebSocket routes, nothing tuned beyond what a benchmark of idle
// connections needs:
//   /pub  the harness's publisher: every text or binary message it sends is published to the
//         topic "all" (the tokio-tungstenite baseline relays its /pub messages the same way);
//   /*    subscribers: plain WebSocket, no authentication, each subscribed to "all" on open.
// idleTimeout 0 (no idle timer, no pings: the connections are idle by design), compression
// off, maxPayloadLength 16 KiB. Prints `ready addr=IP:PORT` once listening (port 0 picks one).
// Loopback addresses only. With --lifeline it exits when its stdin closes, so it cannot outlive
// a harness killed with SIGKILL.
'use strict';

const uWS = require('uwebsockets');

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 0, lifeline: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--listen') {
      const v = argv[++i] || '';
      const colon = v.lastIndexOf(':');
      const port = Number(v.slice(colon + 1));
      if (colon < 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
        throw new Error(`--listen ${v}: expected IP:PORT`);
      }
      opts.host = v.slice(0, colon);
      opts.port = port;
    } else if (a === '--lifeline') {
      opts.lifeline = true;
    } else {
      throw new Error(`unknown argument ${a}`);
    }
  }
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(opts.host)) {
    throw new Error(`--listen ${opts.host}: loopback (127.0.0.0/8) addresses only`);
  }
  return opts;
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`uws peer: ${e.message}`);
    process.exit(64);
  }
  const TOPIC = 'all';
  const common = {
    compression: uWS.DISABLED,
    maxPayloadLength: 16 * 1024,
    idleTimeout: 0,
  };
  const app = uWS.App();
  app.ws('/pub', {
    ...common,
    message: (_ws, message, isBinary) => {
      app.publish(TOPIC, message, isBinary);
    },
  });
  app.ws('/*', {
    ...common,
    open: (ws) => {
      ws.subscribe(TOPIC);
    },
  });
  app.listen(opts.host, opts.port, (token) => {
    if (!token) {
      console.error(`uws peer: cannot listen on ${opts.host}:${opts.port}`);
      process.exit(1);
    }
    console.log(`ready addr=${opts.host}:${uWS.us_socket_local_port(token)}`);
  });
  if (opts.lifeline) {
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
  }
}

main();

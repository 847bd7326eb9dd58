// Compiled by scripts/test-clients.sh with the DOM library: a page's own WebSocket,
// EventSource and document fit the client's injectable parts.

import { HeraldClient } from 'herald-client';

const client = new HeraldClient({
  url: new URL('/herald', location.href),
  getToken: () => sessionStorage.getItem('push-token'),
  WebSocket,
  EventSource,
  document,
  timers: { setTimeout: (fn, ms) => window.setTimeout(fn, ms), clearTimeout: (h) => window.clearTimeout(h) },
  random: () => crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32,
  pauseWhenHidden: true,
});
client.on('push', ({ data }) => {
  document.title = typeof data === 'string' ? data : `${data.byteLength} bytes`;
});
client.start();

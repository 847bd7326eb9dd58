// Compiled by scripts/test-clients.sh with `tsc --noEmit --strict` and no DOM library: the
// published declarations must type a typical program (resolved through package.json
// "exports", as an installed package would be) and reject misuse.

import {
  HeraldClient,
  type DisconnectedEvent,
  type PushEvent,
  type RecoveryEvent,
  DisconnectReason,
  parseMessage,
  Backoff,
  IdWindow,
  endpointUrl,
  isPosition,
} from 'herald-client';

declare const WebSocketImpl: new (url: string, protocols: string[]) => {
  readonly protocol: string;
  readonly readyState: number;
  binaryType: string;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
};

const client = new HeraldClient({
  url: 'https://push.example.com',
  getToken: async () => 'jwt',
  transports: ['websocket', 'sse'],
  fallbackAfter: 2,
  backoff: { baseMs: 500, capMs: 20_000 },
  dedupWindow: 1000,
  pauseWhenHidden: true,
  WebSocket: WebSocketImpl,
});

const off = client.on('push', (p: PushEvent) => {
  const text: string = typeof p.data === 'string' ? p.data : `${p.data.byteLength} bytes`;
  const id: string | undefined = p.id;
  void text;
  void id;
});
off();
client.on('disconnected', (d: DisconnectedEvent) => {
  if (d.reason === DisconnectReason.REPLACED && !d.willReconnect) client.close();
});
client.on('connected', ({ transport, device }) => {
  const t: 'websocket' | 'sse' = transport;
  void t;
  void device;
});
client.on('error', (e) => {
  const kind: 'handshake' | 'token' | 'protocol' = e.kind;
  void kind;
});
client.on('recovery', (r: RecoveryEvent) => {
  if (!r.recovered) {
    const why: string | undefined = r.reason;
    void why; // reload the state from the backend
  } else {
    const n: number | undefined = r.count;
    void n;
  }
});
client.start();
const where: string = client.url;
const resumeFrom: string | undefined = client.lastEventId;
void where;
void resumeFrom;
const twoEdges = new HeraldClient({ urls: ['https://edge-1.example.com', 'https://edge-2.example.com'], getToken: () => 'jwt' });
twoEdges.on('connecting', ({ url }) => void (url satisfies string));
const state: 'idle' | 'connecting' | 'connected' | 'waiting' | 'paused' | 'stopped' = client.state;
void state;

const msg = parseMessage('{"type":"push","id":"1","data":"x"}');
if (msg?.type === 'push') {
  const bytes: string | Uint8Array = msg.data;
  void bytes;
}
new Backoff({ baseMs: 1, capMs: 2 }).fail();
new IdWindow(10).add('x');
if (isPosition('00c0ffee12345678:1764700000000-3')) void 0;
endpointUrl('https://h', 'sse', { token: 't' });

// Misuse the declarations must refuse.
// @ts-expect-error: an unknown event name
client.on('pushed', () => {});
// @ts-expect-error: an unknown transport
new HeraldClient({ url: 'https://h', transports: ['long-polling'] });
// @ts-expect-error: url is required
new HeraldClient({ getToken: () => 'x' });
// @ts-expect-error: getToken returns a token, not a number
new HeraldClient({ url: 'https://h', getToken: () => 42 });
// @ts-expect-error: url and urls together
new HeraldClient({ url: 'https://h', urls: ['https://h'] });
// @ts-expect-error: the old event name
client.on('recovered', () => {});

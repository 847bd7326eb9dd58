// Endpoint URLs: the edge's `/ws` and `/sse` under the configured base, with the credentials
// and the resume position as query parameters (browsers cannot set headers on WebSocket or
// EventSource).

/** @typedef {'websocket' | 'sse'} Transport */

const PATHS = Object.freeze({ websocket: 'ws', sse: 'sse' });

/**
 * Builds the URL of one endpoint.
 *
 * `base` is where the edge answers: `https://push.example.com`, `wss://push.example.com/herald`
 * or, in a page, a relative path such as `/herald`. Its scheme is switched to the transport's
 * (http/https for SSE, ws/wss for WebSocket), the endpoint name is appended to its path, and
 * its own query parameters are kept.
 *
 * @param {string | { href: string }} base a string or a URL
 * @param {Transport} transport
 * @param {{ token?: string | null, lastEventId?: string | null, location?: string }} [params]
 * @returns {string}
 */
export function endpointUrl(base, transport, { token, lastEventId, location } = {}) {
  const url = new URL(typeof base === 'string' ? base : base.href, location);
  const secure = url.protocol === 'https:' || url.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) {
    throw new TypeError(`url must be http(s) or ws(s), got ${url.protocol}`);
  }
  if (transport === 'websocket') url.protocol = secure ? 'wss:' : 'ws:';
  else url.protocol = secure ? 'https:' : 'http:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${PATHS[transport]}`;
  url.hash = '';
  if (token != null && token !== '') url.searchParams.set('access_token', token);
  if (lastEventId != null && lastEventId !== '') url.searchParams.set('last_event_id', lastEventId);
  return url.toString();
}

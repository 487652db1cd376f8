// The two public APIs, at this page's origin: REST commands under /api (the command API), reads
// over GraphQL at /graphql and live order status over /graphql/ws (graphql-transport-ws).

export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** A signed-in account kept in localStorage under `key` (the storefront and the console keep
 * separate ones). */
export class Session {
  constructor(key) {
    this.key = key;
    this.listeners = new Set();
  }
  get() {
    try {
      return JSON.parse(localStorage.getItem(this.key)) || null;
    } catch {
      return null;
    }
  }
  set(value) {
    if (value) localStorage.setItem(this.key, JSON.stringify(value));
    else localStorage.removeItem(this.key);
    this.listeners.forEach((listener) => listener(value));
  }
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  token() {
    return this.get()?.access_token || null;
  }
  /** Trades the refresh token for a new pair; false when the session is over. */
  async refresh() {
    const current = this.get();
    if (!current?.refresh_token) return false;
    const res = await fetch('/api/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: current.refresh_token }),
    });
    if (!res.ok) {
      this.set(null);
      return false;
    }
    const renewed = await res.json();
    this.set({ ...current, ...renewed });
    return true;
  }
}

async function withRefresh(session, send) {
  let res = await send(session?.token());
  if (res.status === 401 && session?.get() && (await session.refresh())) {
    res = await send(session.token());
  }
  return res;
}

/** A GraphQL read. `position` waits for the read models to pass a command's position. */
export async function gql(query, variables = {}, { session, cartToken, position } = {}) {
  const res = await withRefresh(session, (token) => {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (cartToken) headers['cart-token'] = cartToken;
    if (position) headers['shop-position'] = position;
    return fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  });
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`the query API answered ${res.status}`, 'internal', res.status);
  }
  if (body.errors?.length) {
    const [first] = body.errors;
    throw new ApiError(first.message, first.extensions?.code, res.status);
  }
  return body.data;
}

/** A REST command; answers the JSON body (with `position`) or throws the problem's detail. */
export async function command(method, path, body, { session, cartToken, idempotencyKey } = {}) {
  const res = await withRefresh(session, (token) => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    if (cartToken) headers['cart-token'] = cartToken;
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
    return fetch(`/api${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    throw new ApiError(json?.detail || json?.title || `the command API answered ${res.status}`, json?.code, res.status);
  }
  return json || {};
}

/** One subscription over graphql-transport-ws; answers a function that closes it. */
export function subscribe(query, variables, { session, onNext, onError }) {
  const url = new URL('/graphql/ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(url, 'graphql-transport-ws');
  let closed = false;
  socket.onopen = () => {
    const token = session?.token();
    socket.send(JSON.stringify({
      type: 'connection_init',
      payload: token ? { Authorization: `Bearer ${token}` } : {},
    }));
  };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === 'connection_ack') {
      socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
    } else if (data.type === 'next') {
      if (data.payload.errors?.length) onError?.(data.payload.errors[0].message);
      else onNext(data.payload.data);
    } else if (data.type === 'error') {
      onError?.(data.payload?.[0]?.message || 'subscription failed');
    } else if (data.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong' }));
    }
  };
  socket.onclose = () => {
    if (!closed) onError?.('the live connection closed');
  };
  return () => {
    closed = true;
    socket.close();
  };
}

export function money(value) {
  if (!value) return '';
  const amount = value.amountMinor ?? value.amount_minor;
  return new Intl.NumberFormat('en', { style: 'currency', currency: value.currency }).format(amount / 100);
}

export function when(text) {
  return text ? new Date(text).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'medium' }) : '';
}

export const statusWords = {
  AWAITING_STOCK: 'Awaiting stock',
  AWAITING_PAYMENT: 'Awaiting payment',
  CONFIRMED: 'Confirmed',
  SHIPPED: 'Shipped',
  DELIVERED: 'Delivered',
  CANCELLED: 'Cancelled',
  FAILED: 'Failed',
  REFUNDED: 'Refunded',
};

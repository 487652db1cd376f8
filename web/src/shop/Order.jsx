import { useEffect, useState } from 'preact/hooks';
import { command, gql, money, statusWords, subscribe, when } from '../api.js';
import { useLocation } from '../router.jsx';
import { shopper } from './cart.js';

export const ORDER_FIELDS = `id number status failure tracking placedAt customerId
  totals { subtotal { amountMinor currency } discount { amountMinor currency } tax { amountMinor currency }
           shipping { amountMinor currency } total { amountMinor currency } refunded { amountMinor currency } }
  lines { line sku name quantity unitPrice { amountMinor currency } lineTotal { amountMinor currency } }
  timeline { event status detail at }
  payments { id status amount { amountMinor currency } captured { amountMinor currency } refunded { amountMinor currency } }
  paymentStatus`;

const ORDER = `query Order($id: UUID!, $position: String) { order(id: $id, position: $position) { ${ORDER_FIELDS} } }`;
const LIVE = `subscription Live($id: UUID!) { orderStatus(orderId: $id) { status previousStatus event at } }`;

export function OrderLines({ order }) {
  return (
    <>
      <table>
        <caption class="visually-hidden">Order lines</caption>
        <thead>
          <tr><th scope="col">Item</th><th scope="col">Quantity</th><th scope="col">Price</th><th scope="col">Total</th></tr>
        </thead>
        <tbody>
          {order.lines.map((line) => (
            <tr key={line.line}>
              <td>{line.name} <span class="sku">({line.sku})</span></td>
              <td>{line.quantity}</td>
              <td>{money(line.unitPrice)}</td>
              <td>{money(line.lineTotal)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <dl class="totals">
        <dt>Subtotal</dt><dd>{money(order.totals.subtotal)}</dd>
        <dt>Discount</dt><dd>{money(order.totals.discount)}</dd>
        <dt>Shipping</dt><dd>{money(order.totals.shipping)}</dd>
        <dt>Tax</dt><dd>{money(order.totals.tax)}</dd>
        <dt>Total</dt><dd>{money(order.totals.total)}</dd>
        {order.totals.refunded.amountMinor > 0 && (<><dt>Refunded</dt><dd>{money(order.totals.refunded)}</dd></>)}
      </dl>
    </>
  );
}

export function Timeline({ order }) {
  return (
    <ol class="timeline">
      {order.timeline.map((entry, i) => (
        <li key={i}>
          <strong>{statusWords[entry.status] || entry.status}</strong> — {entry.event}
          {entry.detail ? `: ${entry.detail}` : ''} <time datetime={entry.at}>{when(entry.at)}</time>
        </li>
      ))}
    </ol>
  );
}

export function Order({ id }) {
  const { params } = useLocation();
  const position = params.get('position') || null;
  const [order, setOrder] = useState(undefined);
  const [live, setLive] = useState(null);
  const [connected, setConnected] = useState(false);
  const [error, setError] = useState(null);
  const cartToken = localStorage.getItem(`shop.order.${id}`) || undefined;

  const load = (at) =>
    gql(ORDER, { id, position: at || null }, { session: shopper, cartToken }).then(
      (data) => {
        setOrder((current) => data.order || current || null);
        return data.order;
      },
      (e) => {
        setError(e.message);
        return null;
      },
    );

  // the saga places the order shortly after the checkout: ask again until it is there
  useEffect(() => {
    let tries = 0;
    let timer;
    const first = async () => {
      const found = await load(tries === 0 ? position : null);
      tries += 1;
      if (!found && tries < 30) timer = setTimeout(first, 500);
    };
    first();
    return () => clearTimeout(timer);
  }, [id]);

  // then follow it live; without a live connection (e.g. a guest's), poll
  const exists = !!order;
  useEffect(() => {
    if (!exists) return undefined;
    const close = subscribe(LIVE, { id }, {
      session: shopper,
      onNext: (data) => {
        setConnected(true);
        setLive(data.orderStatus);
        // the read model catches up with the change: read the order again, and once more
        // shortly after (the log can be a moment ahead of the read model)
        load(null);
        setTimeout(() => load(null), 1000);
      },
      onError: () => setConnected(false),
    });
    return close;
  }, [id, exists]);
  useEffect(() => {
    if (!exists || connected) return undefined;
    const timer = setInterval(() => load(null), 3000);
    return () => clearInterval(timer);
  }, [id, exists, connected]);

  if (order === undefined) return error ? <p role="alert" class="error">{error}</p> : <p>Loading your order…</p>;
  if (order === null) return <p>Looking for your order… <button type="button" onClick={() => load(null)}>Try again</button></p>;
  const status = live && live.status !== order.status ? live.status : order.status;
  const cancel = async () => {
    try {
      await command('POST', `/orders/${id}/cancel`, { reason: 'changed my mind' }, { session: shopper, cartToken });
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <section aria-labelledby="order-heading">
      <h1 id="order-heading">Order #{order.number}</h1>
      <p class="status-line">
        Status: <strong data-testid="order-status" role="status" aria-live="polite">{statusWords[status] || status}</strong>{' '}
        <span class={connected ? 'badge ok' : 'badge'}>{connected ? 'live' : 'not live'}</span>
      </p>
      {order.failure && <p class="error">{order.failure}</p>}
      {order.tracking && <p>Tracking: {order.tracking}</p>}
      <p>Placed {when(order.placedAt)}{order.paymentStatus ? ` · payment ${order.paymentStatus}` : ''}</p>
      <OrderLines order={order} />
      <h2>History</h2>
      <Timeline order={order} />
      {['AWAITING_STOCK', 'AWAITING_PAYMENT', 'CONFIRMED'].includes(status) && (
        <button type="button" class="secondary" onClick={cancel}>Cancel order</button>
      )}
      {error && <p role="alert" class="error">{error}</p>}
    </section>
  );
}

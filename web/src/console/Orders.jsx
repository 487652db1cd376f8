import { useEffect, useState } from 'preact/hooks';
import { command, gql, money, statusWords, when } from '../api.js';
import { OrderLines, ORDER_FIELDS, Timeline } from '../shop/Order.jsx';
import { staff } from './Console.jsx';

const LIST = `query Orders($filter: OrderFilter, $position: String) {
  orders(filter: $filter, first: 50, position: $position) {
    totalCount
    edges { node { id number status placedAt totals { total { amountMinor currency } } } }
  }
}`;
const ONE = `query One($id: UUID!, $position: String) { order(id: $id, position: $position) { ${ORDER_FIELDS} } }`;

function Actions({ order, onDone }) {
  const [tracking, setTracking] = useState('');
  const [cancelReason, setCancelReason] = useState('');
  const [refund, setRefund] = useState('');
  const [refundReason, setRefundReason] = useState('');
  const [error, setError] = useState(null);
  const [message, setMessage] = useState(null);
  const act = (what, path, body) => async (event) => {
    event.preventDefault();
    setError(null);
    setMessage(null);
    try {
      const written = await command('POST', `/orders/${order.id}/${path}`, body(), { session: staff });
      setMessage(`${what}: done.`);
      onDone(written.position);
    } catch (e) {
      setError(e.message);
    }
  };
  const status = order.status;
  return (
    <div class="cols">
      <div aria-live="polite" style="grid-column: 1 / -1">
        {message && <p class="notice">{message}</p>}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
      {status === 'CONFIRMED' && (
        <form class="stack" aria-label="Ship" onSubmit={act('Shipped', 'ship', () => ({ tracking: tracking || null }))}>
          <label>Tracking number<input value={tracking} onInput={(e) => setTracking(e.currentTarget.value)} /></label>
          <button type="submit">Ship order</button>
        </form>
      )}
      {status === 'SHIPPED' && (
        <form class="stack" aria-label="Deliver" onSubmit={act('Delivered', 'deliver', () => ({}))}>
          <button type="submit">Mark delivered</button>
        </form>
      )}
      {['AWAITING_STOCK', 'AWAITING_PAYMENT', 'CONFIRMED'].includes(status) && (
        <form class="stack" aria-label="Cancel" onSubmit={act('Cancelled', 'cancel', () => ({ reason: cancelReason || null }))}>
          <label>Cancellation reason<input value={cancelReason} onInput={(e) => setCancelReason(e.currentTarget.value)} /></label>
          <button type="submit" class="danger">Cancel order</button>
        </form>
      )}
      {['CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED'].includes(status) && order.totals.refunded.amountMinor < order.totals.total.amountMinor && (
        <form
          class="stack"
          aria-label="Refund"
          onSubmit={act('Refunded', 'refund', () => ({ amount_minor: Math.round(Number(refund.replace(',', '.')) * 100), reason: refundReason || null }))}
        >
          <label>Refund amount ({order.totals.total.currency})<input inputMode="decimal" value={refund} onInput={(e) => setRefund(e.currentTarget.value)} required /></label>
          <label>Refund reason<input value={refundReason} onInput={(e) => setRefundReason(e.currentTarget.value)} /></label>
          <button type="submit">Refund</button>
        </form>
      )}
    </div>
  );
}

export function Orders() {
  const [status, setStatus] = useState('');
  const [list, setList] = useState(null);
  const [selected, setSelected] = useState(null);
  const [order, setOrder] = useState(null);
  const [error, setError] = useState(null);

  const load = (position) =>
    gql(LIST, { filter: status ? { status } : null, position: position || null }, { session: staff }).then(
      (d) => setList(d.orders),
      (e) => setError(e.message),
    );
  const open = (id, position) =>
    gql(ONE, { id, position: position || null }, { session: staff }).then((d) => setOrder(d.order), (e) => setError(e.message));
  useEffect(() => {
    load();
  }, [status]);
  useEffect(() => {
    if (selected) open(selected);
  }, [selected]);

  return (
    <section aria-labelledby="orders-heading">
      <h1 id="orders-heading">Orders</h1>
      <label class="check">
        Status
        <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="">All</option>
          {Object.entries(statusWords).map(([value, label]) => (
            <option key={value} value={value}>{label}</option>
          ))}
        </select>
      </label>
      {error && <p role="alert" class="error">{error}</p>}
      {list && <p class="total">{list.totalCount} orders</p>}
      <table>
        <caption class="visually-hidden">Orders, newest first</caption>
        <thead>
          <tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Status</th><th scope="col">Total</th></tr>
        </thead>
        <tbody>
          {list?.edges.map(({ node }) => (
            <tr key={node.id} class={selected === node.id ? 'selected' : ''}>
              <td><button type="button" class="link" onClick={() => setSelected(node.id)}>Order #{node.number}</button></td>
              <td>{when(node.placedAt)}</td>
              <td>{statusWords[node.status]}</td>
              <td>{money(node.totals.total)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {order && (
        <section aria-labelledby="order-detail">
          <h2 id="order-detail">Order #{order.number}: <span data-testid="console-order-status">{statusWords[order.status]}</span></h2>
          <p>{order.customerId ? `Customer ${order.customerId}` : 'Guest order'} · placed {when(order.placedAt)} · payment {order.paymentStatus || 'none'}</p>
          {order.tracking && <p>Tracking: {order.tracking}</p>}
          <OrderLines order={order} />
          <Actions
            order={order}
            onDone={(position) => {
              open(order.id, position);
              load(position);
            }}
          />
          <h3>History</h3>
          <Timeline order={order} />
        </section>
      )}
    </section>
  );
}

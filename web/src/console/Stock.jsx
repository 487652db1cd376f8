import { useState } from 'preact/hooks';
import { command, gql, when } from '../api.js';
import { staff } from './Console.jsx';

const LEVEL = `query Level($sku: String!, $position: String) {
  inventory(sku: $sku, position: $position) { sku onHand reserved available lowStockThreshold reservations { orderId quantity expiresAt } }
}`;

export function Stock() {
  const [sku, setSku] = useState('');
  const [level, setLevel] = useState(undefined);
  const [receive, setReceive] = useState('');
  const [delta, setDelta] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState(null);
  const [message, setMessage] = useState(null);

  const load = async (which, position) => {
    const data = await gql(LEVEL, { sku: which, position: position || null }, { session: staff });
    setLevel(data.inventory);
  };
  const run = async (work) => {
    setError(null);
    setMessage(null);
    try {
      await work();
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <section aria-labelledby="stock-heading">
      <h1 id="stock-heading">Stock</h1>
      <form class="inline" onSubmit={(e) => (e.preventDefault(), run(() => load(sku.trim())))}>
        <label>SKU<input value={sku} onInput={(e) => setSku(e.currentTarget.value)} required /></label>
        <button type="submit">Look up</button>
      </form>
      <div aria-live="polite">
        {message && <p class="notice">{message}</p>}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
      {level === null && <p>No stock recorded for {sku}.</p>}
      {level && (
        <>
          <dl class="totals" aria-label={`Stock of ${level.sku}`}>
            <dt>On hand</dt><dd data-testid="on-hand">{level.onHand}</dd>
            <dt>Reserved</dt><dd>{level.reserved}</dd>
            <dt>Available</dt><dd data-testid="available">{level.available}</dd>
          </dl>
          <div class="cols">
            <form
              class="stack"
              aria-label="Receive stock"
              onSubmit={(e) => {
                e.preventDefault();
                run(async () => {
                  const w = await command('POST', `/inventory/${encodeURIComponent(level.sku)}/receive`, { quantity: Number(receive) }, { session: staff });
                  setMessage(`Received ${receive} × ${level.sku}.`);
                  setReceive('');
                  await load(level.sku, w.position);
                });
              }}
            >
              <label>Units received<input type="number" min="1" value={receive} onInput={(e) => setReceive(e.currentTarget.value)} required /></label>
              <button type="submit">Receive</button>
            </form>
            <form
              class="stack"
              aria-label="Adjust stock"
              onSubmit={(e) => {
                e.preventDefault();
                run(async () => {
                  const w = await command('POST', `/inventory/${encodeURIComponent(level.sku)}/adjust`, { delta: Number(delta), reason }, { session: staff });
                  setMessage(`Adjusted ${level.sku} by ${delta}.`);
                  setDelta('');
                  setReason('');
                  await load(level.sku, w.position);
                });
              }}
            >
              <label>Adjustment (+/− units)<input type="number" value={delta} onInput={(e) => setDelta(e.currentTarget.value)} required /></label>
              <label>Reason<input value={reason} onInput={(e) => setReason(e.currentTarget.value)} required /></label>
              <button type="submit">Adjust</button>
            </form>
          </div>
          <h2>Open reservations</h2>
          {level.reservations.length === 0 ? <p>None.</p> : (
            <table>
              <thead><tr><th scope="col">Order</th><th scope="col">Units</th><th scope="col">Expires</th></tr></thead>
              <tbody>
                {level.reservations.map((r) => (
                  <tr key={r.orderId}><td>{r.orderId}</td><td>{r.quantity}</td><td>{when(r.expiresAt)}</td></tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

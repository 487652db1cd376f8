import { useEffect, useState } from 'preact/hooks';
import { money } from '../api.js';
import { Link } from '../router.jsx';
import { applyCoupon, changeQuantity, loadCart, onCartChange } from './cart.js';

export function useCart() {
  const [cart, setCart] = useState(undefined);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      loadCart().then(
        (c) => live && (setCart(c), setError(null)),
        (e) => live && setError(e.message),
      );
    load();
    const stop = onCartChange(load);
    return () => {
      live = false;
      stop();
    };
  }, []);
  return [cart, error];
}

export function Cart() {
  const [cart, loadError] = useCart();
  const [error, setError] = useState(null);
  const [coupon, setCoupon] = useState('');

  const run = async (work) => {
    setError(null);
    try {
      await work();
    } catch (e) {
      setError(e.message);
    }
  };

  if (cart === undefined && !loadError) return <p>Loading…</p>;
  const empty = !cart || cart.status !== 'OPEN' || cart.lines.length === 0;
  return (
    <section aria-labelledby="cart-heading">
      <h1 id="cart-heading">Your cart</h1>
      {(error || loadError) && <p role="alert" class="error">{error || loadError}</p>}
      {empty ? (
        <p>
          Your cart is empty. <Link href="/">Browse the catalog</Link>
        </p>
      ) : (
        <>
          <table>
            <caption class="visually-hidden">Items in your cart</caption>
            <thead>
              <tr><th scope="col">Item</th><th scope="col">Price</th><th scope="col">Quantity</th><th scope="col">Total</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {cart.lines.map((line) => (
                <tr key={line.sku}>
                  <td><Link href={`/product/${encodeURIComponent(line.sku)}`}>{line.sku}</Link></td>
                  <td>{money(line.unitPrice)}</td>
                  <td>
                    <label class="visually-hidden" for={`qty-${line.sku}`}>Quantity of {line.sku}</label>
                    <input
                      id={`qty-${line.sku}`}
                      type="number"
                      min="0"
                      value={line.quantity}
                      onChange={(e) => run(() => changeQuantity(line.sku, Number(e.currentTarget.value)))}
                    />
                  </td>
                  <td>{money(line.lineTotal)}</td>
                  <td>
                    <button type="button" class="link" onClick={() => run(() => changeQuantity(line.sku, 0))}>
                      Remove {line.sku}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              run(() => applyCoupon(coupon.trim()));
            }}
          >
            <label>
              Coupon code
              <input value={coupon} onInput={(e) => setCoupon(e.currentTarget.value)} autocomplete="off" />
            </label>
            <button type="submit">Apply</button>
          </form>
          {cart.coupon && <p>Coupon {cart.coupon.code} applied.</p>}
          {cart.totals && (
            <dl class="totals">
              <dt>Subtotal</dt><dd>{money(cart.totals.subtotal)}</dd>
              <dt>Discount</dt><dd>{money(cart.totals.discount)}</dd>
              <dt>Total</dt><dd data-testid="cart-total">{money(cart.totals.total)}</dd>
            </dl>
          )}
          <Link class="button" href="/checkout">Check out</Link>
        </>
      )}
    </section>
  );
}

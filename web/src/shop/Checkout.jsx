import { useState } from 'preact/hooks';
import { money } from '../api.js';
import { Link, navigate } from '../router.jsx';
import { checkout } from './cart.js';
import { useCart } from './Cart.jsx';

const CARDS = [
  ['pm_card_visa', 'Test Visa (approved)'],
  ['pm_card_chargeDeclined', 'Test card: declined'],
  ['pm_card_chargeDeclinedInsufficientFunds', 'Test card: insufficient funds'],
  ['pm_card_slow', 'Test card: slow approval'],
];

function Field({ label, name, value, onInput, autocomplete, required = true }) {
  return (
    <label>
      {label}
      <input name={name} value={value} onInput={onInput} autocomplete={autocomplete} required={required} />
    </label>
  );
}

export function Checkout() {
  const [cart] = useCart();
  const [address, setAddress] = useState({ name: '', line1: '', city: '', postal_code: '', country: 'DE' });
  const [card, setCard] = useState(CARDS[0][0]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (key) => (e) => setAddress({ ...address, [key]: e.currentTarget.value });

  if (cart === undefined) return <p>Loading…</p>;
  if (!cart || cart.status !== 'OPEN' || cart.lines.length === 0) {
    return (
      <p>
        Nothing to check out. <Link href="/">Browse the catalog</Link>
      </p>
    );
  }
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const accepted = await checkout(address, card);
      navigate(`/orders/${accepted.order_id}?position=${encodeURIComponent(accepted.position || '')}`);
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="checkout-heading">
      <h1 id="checkout-heading">Checkout</h1>
      <p>
        {cart.itemCount} items, total <strong>{money(cart.totals?.total)}</strong>
      </p>
      <form onSubmit={submit} class="stack">
        <fieldset>
          <legend>Shipping address</legend>
          <Field label="Full name" name="name" value={address.name} onInput={set('name')} autocomplete="name" />
          <Field label="Street and number" name="line1" value={address.line1} onInput={set('line1')} autocomplete="address-line1" />
          <Field label="City" name="city" value={address.city} onInput={set('city')} autocomplete="address-level2" />
          <Field label="Postal code" name="postal_code" value={address.postal_code} onInput={set('postal_code')} autocomplete="postal-code" />
          <Field label="Country (two letters)" name="country" value={address.country} onInput={set('country')} autocomplete="country" />
        </fieldset>
        <fieldset>
          <legend>Payment</legend>
          <label>
            Card
            <select value={card} onChange={(e) => setCard(e.currentTarget.value)}>
              {CARDS.map(([value, label]) => (
                <option key={value} value={value}>{label}</option>
              ))}
            </select>
          </label>
        </fieldset>
        {error && <p role="alert" class="error">{error}</p>}
        <button type="submit" disabled={busy}>Place order</button>
      </form>
    </section>
  );
}

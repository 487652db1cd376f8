import { useEffect, useState } from 'preact/hooks';
import { gql, money } from '../api.js';
import { Link } from '../router.jsx';
import { addToCart } from './cart.js';

const PRODUCT = `query Product($sku: String!) {
  product(sku: $sku) {
    sku name category description price { amountMinor currency } available inStock discontinued
  }
}`;

export function Product({ sku }) {
  const [product, setProduct] = useState(undefined);
  const [quantity, setQuantity] = useState(1);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    gql(PRODUCT, { sku }).then((data) => setProduct(data.product), (e) => setError(e.message));
  }, [sku]);

  if (error && product === undefined) return <p role="alert" class="error">{error}</p>;
  if (product === undefined) return <p>Loading…</p>;
  if (product === null) return <h1>No product {sku}</h1>;

  const add = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      await addToCart(product.sku, Number(quantity));
      setMessage(`Added ${quantity} × ${product.name} to your cart.`);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const orderable = product.inStock && !product.discontinued;
  return (
    <article class="product">
      <p class="crumbs">
        <Link href="/">All products</Link> › <Link href={`/?category=${encodeURIComponent(product.category)}`}>{product.category}</Link>
      </p>
      <h1>{product.name}</h1>
      <p class="price">{money(product.price)}</p>
      <p>{product.description}</p>
      <p class="sku">SKU {product.sku}</p>
      <p class={orderable ? 'badge ok' : 'badge out'}>
        {product.discontinued ? 'No longer sold' : product.inStock ? `${product.available} in stock` : 'Out of stock'}
      </p>
      {orderable && (
        <form onSubmit={add} class="add">
          <label>
            Quantity
            <input
              type="number"
              min="1"
              max={product.available}
              value={quantity}
              onInput={(e) => setQuantity(e.currentTarget.value)}
              required
            />
          </label>
          <button type="submit" disabled={busy}>Add to cart</button>
        </form>
      )}
      <div aria-live="polite">
        {message && (
          <p class="notice">
            {message} <Link href="/cart">View cart</Link>
          </p>
        )}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
    </article>
  );
}

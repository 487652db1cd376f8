import { useEffect, useState } from 'preact/hooks';
import { command, gql, money } from '../api.js';
import { staff } from './Console.jsx';

const LIST = `query List($position: String) {
  products(first: 100, sort: NEWEST, position: $position) {
    totalCount
    edges { node { sku name category description price { amountMinor currency } available inStock } }
  }
}`;

const EMPTY = { sku: '', name: '', description: '', category: '', price: '', currency: 'EUR' };

function toMinor(text) {
  const value = Number(String(text).replace(',', '.'));
  return Math.round(value * 100);
}

export function Products() {
  const [list, setList] = useState(null);
  const [form, setForm] = useState(EMPTY);
  const [editing, setEditing] = useState(null);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);

  const load = (position) => gql(LIST, { position: position || null }, { session: staff }).then((d) => setList(d.products), (e) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value });

  const save = async (event) => {
    event.preventDefault();
    setError(null);
    setMessage(null);
    try {
      const price = { amount_minor: toMinor(form.price), currency: form.currency };
      let written;
      if (editing) {
        written = await command('PATCH', `/products/${encodeURIComponent(editing)}`, {
          name: form.name, description: form.description, category: form.category, price,
        }, { session: staff });
        setMessage(`Saved ${editing}.`);
      } else {
        written = await command('POST', '/products', {
          sku: form.sku, name: form.name, description: form.description, category: form.category, price,
        }, { session: staff });
        setMessage(`Created ${form.sku}.`);
      }
      setForm(EMPTY);
      setEditing(null);
      await load(written.position);
    } catch (e) {
      setError(e.message);
    }
  };
  const edit = (node) => {
    setEditing(node.sku);
    setForm({
      sku: node.sku, name: node.name, description: node.description, category: node.category,
      price: (node.price.amountMinor / 100).toFixed(2), currency: node.price.currency,
    });
    document.getElementById('product-name')?.focus();
  };
  const discontinue = async (sku) => {
    setError(null);
    try {
      const written = await command('POST', `/products/${encodeURIComponent(sku)}/discontinue`, undefined, { session: staff });
      setMessage(`Discontinued ${sku}.`);
      await load(written.position);
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <section aria-labelledby="products-heading">
      <h1 id="products-heading">Products</h1>
      <div aria-live="polite">
        {message && <p class="notice">{message}</p>}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
      <form class="inline" onSubmit={save} aria-label={editing ? `Edit ${editing}` : 'New product'}>
        <label>SKU<input value={form.sku} onInput={set('sku')} required disabled={!!editing} /></label>
        <label>Name<input id="product-name" value={form.name} onInput={set('name')} required /></label>
        <label>Category<input value={form.category} onInput={set('category')} required /></label>
        <label>Description<input value={form.description} onInput={set('description')} /></label>
        <label>Price<input inputMode="decimal" value={form.price} onInput={set('price')} required pattern="[0-9]+([.,][0-9]{1,2})?" /></label>
        <label>Currency<input value={form.currency} onInput={set('currency')} required size="4" /></label>
        <button type="submit">{editing ? 'Save changes' : 'Create product'}</button>
        {editing && <button type="button" class="secondary" onClick={() => (setEditing(null), setForm(EMPTY))}>Cancel edit</button>}
      </form>
      {list && <p class="total">{list.totalCount} products on sale</p>}
      <table>
        <caption class="visually-hidden">Products on sale</caption>
        <thead>
          <tr><th scope="col">SKU</th><th scope="col">Name</th><th scope="col">Category</th><th scope="col">Price</th><th scope="col">Available</th><th scope="col">Actions</th></tr>
        </thead>
        <tbody>
          {list?.edges.map(({ node }) => (
            <tr key={node.sku}>
              <td>{node.sku}</td>
              <td>{node.name}</td>
              <td>{node.category}</td>
              <td>{money(node.price)}</td>
              <td>{node.available}</td>
              <td>
                <button type="button" class="link" onClick={() => edit(node)}>Edit {node.sku}</button>{' '}
                <button type="button" class="link" onClick={() => discontinue(node.sku)}>Discontinue {node.sku}</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

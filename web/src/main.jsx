import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { Link, navigate, useLocation } from './router.jsx';
import { Catalog } from './shop/Catalog.jsx';
import { Product } from './shop/Product.jsx';
import { Cart, useCart } from './shop/Cart.jsx';
import { Checkout } from './shop/Checkout.jsx';
import { Order } from './shop/Order.jsx';
import { Account } from './shop/Account.jsx';
import { shopper } from './shop/cart.js';
import { Console } from './console/Console.jsx';

function Search() {
  const { params, path } = useLocation();
  const [text, setText] = useState(path === '/' ? params.get('q') || '' : '');
  useEffect(() => {
    if (path === '/') setText(params.get('q') || '');
  }, [path, params.get('q')]);
  return (
    <form
      role="search"
      class="search"
      onSubmit={(e) => {
        e.preventDefault();
        navigate(text.trim() ? `/?q=${encodeURIComponent(text.trim())}` : '/');
      }}
    >
      <label for="search-input" class="visually-hidden">Search products</label>
      <input id="search-input" type="search" placeholder="Search products" value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <button type="submit">Search</button>
    </form>
  );
}

function Storefront() {
  const { path } = useLocation();
  const [cart] = useCart();
  const [session, setSession] = useState(shopper.get());
  useEffect(() => shopper.subscribe(setSession), []);
  const count = cart && cart.status === 'OPEN' ? cart.itemCount : 0;
  document.title = 'shop';

  let page;
  let match;
  if (path === '/' || path === '') page = <Catalog />;
  else if ((match = path.match(/^\/product\/([^/]+)$/))) page = <Product sku={decodeURIComponent(match[1])} />;
  else if (path === '/cart') page = <Cart />;
  else if (path === '/checkout') page = <Checkout />;
  else if ((match = path.match(/^\/orders\/([0-9a-f-]+)$/))) page = <Order id={match[1]} />;
  else if (path === '/account') page = <Account />;
  else page = <h1>Page not found</h1>;

  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <Link href="/" class="brand">shop</Link>
        <Search />
        <nav aria-label="Shop">
          <Link href="/cart">Cart ({count})</Link>
          <Link href="/account">{session ? 'Account' : 'Sign in'}</Link>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>{page}</main>
      <footer>
        <Link href="/console">Staff console</Link>
      </footer>
    </>
  );
}

function App() {
  const { path } = useLocation();
  return path === '/console' || path.startsWith('/console/') ? <Console /> : <Storefront />;
}

render(<App />, document.getElementById('app'));

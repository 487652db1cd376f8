// The shopper's cart: a guest cart (id + Cart-Token) until sign-in, then the customer's own,
// into which the guest cart is merged.
import { command, gql, Session } from '../api.js';

export const shopper = new Session('shop.session');
const listeners = new Set();

function storageKey() {
  const customer = shopper.get()?.customer_id;
  return customer ? `shop.cart.${customer}` : 'shop.cart.guest';
}

export function currentCart() {
  try {
    return JSON.parse(localStorage.getItem(storageKey())) || null;
  } catch {
    return null;
  }
}

function remember(cart) {
  if (cart) localStorage.setItem(storageKey(), JSON.stringify(cart));
  else localStorage.removeItem(storageKey());
  listeners.forEach((listener) => listener(cart));
}

export function onCartChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

async function openCart() {
  const opened = await command('POST', '/carts', { currency: 'EUR' }, { session: shopper });
  const cart = { id: opened.cart_id, token: opened.cart_token || null, position: opened.position };
  remember(cart);
  return cart;
}

function options(cart) {
  return { session: shopper, cartToken: cart.token || undefined };
}

export async function addToCart(sku, quantity) {
  let cart = currentCart() || (await openCart());
  let written;
  try {
    written = await command('POST', `/carts/${cart.id}/items`, { sku, quantity }, options(cart));
  } catch (error) {
    // a cart checked out or merged elsewhere: start a new one
    if (error.status !== 409 && error.status !== 404) throw error;
    cart = await openCart();
    written = await command('POST', `/carts/${cart.id}/items`, { sku, quantity }, options(cart));
  }
  remember({ ...cart, position: written.position });
}

export async function changeQuantity(sku, quantity) {
  const cart = currentCart();
  const written = quantity > 0
    ? await command('PATCH', `/carts/${cart.id}/items/${encodeURIComponent(sku)}`, { quantity }, options(cart))
    : await command('DELETE', `/carts/${cart.id}/items/${encodeURIComponent(sku)}`, undefined, options(cart));
  remember({ ...cart, position: written.position });
}

export async function applyCoupon(code) {
  const cart = currentCart();
  const written = await command('POST', `/carts/${cart.id}/coupon`, { code }, options(cart));
  remember({ ...cart, position: written.position });
}

export async function checkout(address, paymentMethod) {
  const cart = currentCart();
  const accepted = await command(
    'POST',
    `/carts/${cart.id}/checkout`,
    { shipping_address: address, payment_method: paymentMethod },
    { ...options(cart), idempotencyKey: `checkout-${cart.id}` },
  );
  // a guest keeps its cart's secret to follow and cancel the order
  if (cart.token) localStorage.setItem(`shop.order.${accepted.order_id}`, cart.token);
  remember(null);
  return accepted;
}

export const CART_QUERY = `query Cart($id: UUID!) {
  cart(id: $id) {
    id status itemCount currency orderId
    lines { sku quantity unitPrice { amountMinor currency } lineTotal { amountMinor currency } }
    coupon { code }
    totals { subtotal { amountMinor currency } discount { amountMinor currency } total { amountMinor currency } }
  }
}`;

export async function loadCart() {
  const cart = currentCart();
  if (!cart) return null;
  const data = await gql(CART_QUERY, { id: cart.id }, { ...options(cart), position: cart.position });
  return data.cart;
}

/** Signs in (or registers), then merges the guest cart into the customer's. */
export async function signIn(path, body) {
  const guest = currentCart();
  const session = await command('POST', `/auth/${path}`, body);
  shopper.set({ ...session, email: body.email });
  if (guest) {
    localStorage.removeItem('shop.cart.guest');
    const mine = currentCart() || (await openCart());
    try {
      const merged = await command('POST', `/carts/${mine.id}/merge`, { guest_cart_id: guest.id }, {
        session: shopper,
        cartToken: guest.token,
      });
      remember({ ...mine, position: merged.position });
    } catch (error) {
      // an empty or already checked-out guest cart has nothing to bring
      if (error.status !== 409 && error.status !== 422 && error.status !== 404) throw error;
    }
  }
  listeners.forEach((listener) => listener(currentCart()));
}

export async function signOut() {
  const session = shopper.get();
  if (session?.refresh_token) {
    await command('POST', '/auth/logout', { refresh_token: session.refresh_token }).catch(() => {});
  }
  shopper.set(null);
  listeners.forEach((listener) => listener(currentCart()));
}

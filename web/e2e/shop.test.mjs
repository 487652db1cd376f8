// The storefront and the console in Debian's chromium, against a `shop serve` of the test's own:
// what a shopper, a staff member, an operator and an auditor see, a screenshot at each step
// (target/screenshots/), axe's accessibility rules on every page, and the main flows by keyboard.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';
import { psql, startShop } from './server.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const SHOTS = process.env.SHOP_SCREENSHOTS || `${root}target/screenshots`;
const BIN = process.env.SHOP_BIN || `${process.env.CARGO_TARGET_DIR || `${process.env.HOME}/.cache/shop/target`}/debug/shop`;
const WEB = process.env.SHOP_WEB_DIR || `${root}target/web`;
const CHROMIUM = process.env.SHOP_CHROMIUM || '/usr/bin/chromium';
const WAIT = 15_000;

let shop;
let browser;
let shot = 0;

before(async () => {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  shop = await startShop({ bin: BIN, webDir: WEB });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});

after(async () => {
  await browser?.close();
  await shop?.stop();
});

async function snap(page, name) {
  shot += 1;
  await page.screenshot({ path: `${SHOTS}/${String(shot).padStart(2, '0')}-${name}.png`, fullPage: true });
}

/** Waits until the page shows `text` (a string or a RegExp) in a visible element. */
async function sees(page, text, options = {}) {
  try {
    await page.getByText(text, options).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (error) {
    await page.screenshot({ path: `${SHOTS}/failed-${String(text).replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}.png`, fullPage: true });
    throw error;
  }
}

async function heading(page, name) {
  await page.getByRole('heading', { name }).first().waitFor({ state: 'visible', timeout: WAIT });
}

/** axe's WCAG 2 A/AA rules: no violations on what is on screen. */
async function accessible(page, what) {
  const { violations } = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  const described = violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  assert.deepEqual(described, [], `accessibility of ${what}`);
}

async function focusedName(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const label = el?.labels?.[0]?.textContent || el?.getAttribute('aria-label') || el?.textContent || '';
    return label.trim();
  });
}

function rows(page, name) {
  return page.getByRole('table', name ? { name } : undefined).locator('tbody tr');
}

let orderId;
let orderNumber;
let shopper;

test('a guest browses, searches with a typo and filters by facets', async () => {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(shop.url);
  await heading(page, 'All products');
  await sees(page, '12 products');
  await sees(page, 'Studio headphones');
  await accessible(page, 'the catalog');
  await snap(page, 'catalog');

  // the first Tab reaches the skip link; the search box is reachable by keyboard
  await page.keyboard.press('Tab');
  assert.equal(await focusedName(page), 'Skip to content');

  await page.getByRole('link', { name: /audio/ }).click();
  await heading(page, 'Category: audio');
  await sees(page, '4 products');
  assert.equal(await page.locator('.grid .card').count(), 4);
  await snap(page, 'category-audio');

  // typo tolerance: "hedphones" finds the headphones
  await page.getByLabel('Search products').fill('hedphones');
  await page.getByLabel('Search products').press('Enter');
  await heading(page, 'Results for “hedphones”');
  await sees(page, 'Studio headphones');
  await sees(page, 'Wireless headphones');
  await snap(page, 'search-typo');

  // facets narrow the search: the price band of the cheaper pair
  await page.getByLabel('Search products').fill('');
  await page.getByLabel('Search products').press('Enter');
  await heading(page, 'All products');
  await page.getByLabel(/In stock only/).check();
  await sees(page, '11 products');
  assert.equal(await page.getByText('Desk plant').count(), 0, 'the out-of-stock plant is filtered out');
  await page.getByRole('link', { name: /€100 – €250/ }).click();
  await sees(page, '4 products');
  await snap(page, 'facets-in-stock-100-250');
  await page.close();
});

test('a guest fills a cart, registers, finds the cart merged and checks out with a test card', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${shop.url}/product/HP-100`);
  await heading(page, 'Studio headphones');
  await sees(page, '€129.00');
  await sees(page, '40 in stock');
  await accessible(page, 'the product page');
  await page.getByLabel('Quantity').fill('2');
  await page.getByRole('button', { name: 'Add to cart' }).click();
  await sees(page, 'Added 2 × Studio headphones to your cart.');
  await sees(page, 'Cart (2)');
  await snap(page, 'product-added');

  await page.getByRole('link', { name: 'Cart (2)' }).click();
  await heading(page, 'Your cart');
  await sees(page, '€258.00');
  await accessible(page, 'the cart');
  await snap(page, 'guest-cart');

  // register: the guest cart is merged into the new customer's cart
  shopper = { email: `shopper-${Date.now()}@example.com`, password: 'correct horse battery' };
  await page.getByRole('link', { name: 'Sign in' }).click();
  await heading(page, 'Your account');
  await accessible(page, 'the sign-in page');
  const register = page.getByRole('form', { name: 'Create an account' });
  await register.getByLabel('Name').fill('Ada Shopper');
  await register.getByLabel('Email').fill(shopper.email);
  await register.getByLabel(/Password/).fill(shopper.password);
  await register.getByLabel(/Password/).press('Enter');
  await sees(page, `Signed in as ${shopper.email}`);
  await sees(page, 'No orders yet.');
  await sees(page, 'Cart (2)');
  await snap(page, 'registered-cart-merged');

  await page.getByRole('link', { name: 'Cart (2)' }).click();
  await sees(page, 'HP-100');
  await page.getByLabel('Coupon code').fill('WELCOME10');
  await page.getByRole('button', { name: 'Apply' }).click();
  await sees(page, 'Coupon WELCOME10 applied.');
  await sees(page, '€232.20');
  await snap(page, 'cart-coupon');

  // checkout by keyboard only: Tab through the labelled fields, Enter submits
  await page.getByRole('link', { name: 'Check out' }).click();
  await heading(page, 'Checkout');
  await accessible(page, 'the checkout');
  await page.getByLabel('Full name').focus();
  for (const [label, value] of [
    ['Full name', 'Ada Shopper'],
    ['Street and number', '1 Main Street'],
    ['City', 'Berlin'],
    ['Postal code', '10115'],
  ]) {
    assert.equal(await focusedName(page), label);
    await page.keyboard.type(value);
    await page.keyboard.press('Tab');
  }
  assert.equal(await focusedName(page), 'Country (two letters)');
  await page.keyboard.press('Tab');
  assert.match(await focusedName(page), /^Card/);
  await page.keyboard.press('Tab');
  assert.equal(await focusedName(page), 'Place order');
  await snap(page, 'checkout-form');
  await page.keyboard.press('Enter');

  // the order page follows the order live over the subscription until it is confirmed
  await page.waitForURL(/\/orders\//, { timeout: WAIT });
  orderId = page.url().match(/orders\/([0-9a-f-]+)/)[1];
  await heading(page, /Order #\d+/);
  orderNumber = (await page.getByRole('heading', { name: /Order #\d+/ }).textContent()).match(/#(\d+)/)[1];
  await page.getByTestId('order-status').filter({ hasText: 'Confirmed' }).waitFor({ timeout: WAIT });
  await sees(page, 'live');
  // 258.00 less 10% is 232.20, plus 19% tax
  await sees(page, '€25.80');
  await sees(page, '€276.32');
  await accessible(page, 'the order page');
  await snap(page, 'order-confirmed-live');

  await page.getByRole('link', { name: 'Account' }).click();
  await sees(page, `#${orderNumber}`);
  await sees(page, 'Confirmed');
  await snap(page, 'order-history');
  await context.close();
});

test('staff manage products and stock, ship and refund the order while the shopper watches it live', async () => {
  const shopperPage = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await shopperPage.goto(`${shop.url}/account`);
  const signIn = shopperPage.getByRole('form', { name: 'Sign in' });
  await signIn.getByLabel('Email').fill(shopper.email);
  await signIn.getByLabel('Password').fill(shopper.password);
  await signIn.getByRole('button', { name: 'Sign in' }).click();
  await shopperPage.getByRole('link', { name: `#${orderNumber}` }).click();
  await shopperPage.getByTestId('order-status').filter({ hasText: 'Confirmed' }).waitFor({ timeout: WAIT });
  await sees(shopperPage, 'live');

  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${shop.url}/console`);
  await heading(page, 'Console sign-in');
  await accessible(page, 'the console sign-in');
  await page.getByLabel('Email').fill(shop.accounts.staff.email);
  await page.getByLabel('Password').fill(shop.accounts.staff.password);
  await page.getByLabel('Password').press('Enter');
  await heading(page, 'Products');
  await sees(page, '12 products on sale');
  await accessible(page, 'the products console');

  const form = page.getByRole('form', { name: 'New product' });
  await form.getByLabel('SKU').fill('KET-01');
  await form.getByLabel('Name').fill('Electric kettle');
  await form.getByLabel('Category').fill('home');
  await form.getByLabel('Description').fill('1.7 litres, stainless steel.');
  await form.getByLabel('Price').fill('39.90');
  await form.getByRole('button', { name: 'Create product' }).click();
  await sees(page, 'Created KET-01.');
  await sees(page, '13 products on sale');
  await sees(page, 'Electric kettle');
  await page.getByRole('button', { name: 'Edit KET-01' }).click();
  await page.getByRole('form', { name: 'Edit KET-01' }).getByLabel('Price').fill('34.90');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await sees(page, 'Saved KET-01.');
  await sees(page, '€34.90');
  await snap(page, 'console-products');

  await page.getByRole('link', { name: 'Stock' }).click();
  await heading(page, 'Stock');
  await page.getByLabel('SKU').fill('HP-100');
  await page.getByRole('button', { name: 'Look up' }).click();
  // 40 on hand, the 2 ordered units taken
  await page.getByTestId('on-hand').filter({ hasText: /^38$/ }).waitFor({ timeout: WAIT });
  await page.getByLabel('Units received').fill('12');
  await page.getByRole('button', { name: 'Receive' }).click();
  await sees(page, 'Received 12 × HP-100.');
  await page.getByTestId('on-hand').filter({ hasText: /^50$/ }).waitFor({ timeout: WAIT });
  await page.getByLabel(/Adjustment/).fill('-1');
  await page.getByLabel('Reason').fill('damaged in the warehouse');
  await page.getByRole('button', { name: 'Adjust' }).click();
  await page.getByTestId('on-hand').filter({ hasText: /^49$/ }).waitFor({ timeout: WAIT });
  await accessible(page, 'the stock console');
  await snap(page, 'console-stock');

  await page.getByRole('link', { name: 'Orders' }).click();
  await heading(page, 'Orders');
  await page.getByRole('button', { name: `Order #${orderNumber}` }).click();
  await page.getByTestId('console-order-status').filter({ hasText: 'Confirmed' }).waitFor({ timeout: WAIT });
  await page.getByLabel('Tracking number').fill('TRACK-123');
  await page.getByRole('button', { name: 'Ship order' }).click();
  await page.getByTestId('console-order-status').filter({ hasText: 'Shipped' }).waitFor({ timeout: WAIT });
  await sees(page, 'Tracking: TRACK-123');
  // the shopper's page changes without a reload
  await shopperPage.getByTestId('order-status').filter({ hasText: 'Shipped' }).waitFor({ timeout: WAIT });
  await sees(shopperPage, 'Tracking: TRACK-123');
  await snap(shopperPage, 'shopper-sees-shipped-live');

  await page.getByLabel(/Refund amount/).fill('20.00');
  await page.getByLabel('Refund reason').fill('scratched box');
  await page.getByRole('button', { name: 'Refund' }).click();
  await sees(page, 'Refunded: done.');
  await sees(page, '€20.00');
  await accessible(page, 'the orders console');
  await snap(page, 'console-order-shipped-refunded');

  await page.getByRole('link', { name: 'Sales' }).click();
  await heading(page, 'Sales by day');
  await page.getByTestId('sales-revenue').first().waitFor({ timeout: WAIT });
  assert.equal(await page.getByTestId('sales-revenue').first().textContent(), '€258.00');
  await page.locator('.plot canvas').first().waitFor({ timeout: WAIT });
  await accessible(page, 'the sales plot');
  await snap(page, 'console-sales-plot');

  await page.getByRole('link', { name: 'Read models' }).click();
  await heading(page, 'Read models');
  await page.getByTestId('state-orders').filter({ hasText: 'live' }).waitFor({ timeout: WAIT });
  await page.getByRole('button', { name: 'Rebuild orders' }).click();
  await sees(page, 'Rebuild of orders started.');
  // rebuilt and swapped in: live again, with the same order still readable
  await page.getByRole('button', { name: 'Rebuild orders' }).waitFor({ timeout: WAIT * 2 });
  await page.getByTestId('state-orders').filter({ hasText: 'live' }).waitFor({ timeout: WAIT });
  await page.locator('.plot canvas').first().waitFor({ timeout: WAIT });
  await accessible(page, 'the read models');
  await snap(page, 'console-read-models');
  await page.getByRole('link', { name: 'Orders' }).click();
  await sees(page, `Order #${orderNumber}`);
  await page.context().close();
  await shopperPage.context().close();
});

test('an auditor reads a stream with actors and causation, its state at a version, and a broken chain', async () => {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${shop.url}/console`);
  await page.getByLabel('Email').fill(shop.accounts.auditor.email);
  await page.getByLabel('Password').fill(shop.accounts.auditor.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await heading(page, 'Audit');
  assert.equal(await page.getByRole('link', { name: 'Products' }).count(), 0, 'auditors see no staff sections');

  await page.getByLabel('Stream type').selectOption('order');
  await page.getByLabel('Stream id').fill(orderId);
  await page.getByRole('button', { name: 'Show history' }).click();
  await heading(page, /History \(\d+ events?\)/);
  await sees(page, 'OrderPlaced');
  // the saga placed and confirmed it for the checkout; staff shipped and refunded it
  await sees(page, 'system: saga:checkout');
  await sees(page, `checkout:${orderId}`);
  await sees(page, /^staff: /);
  await page.getByRole('button', { name: 'Verify chain' }).click();
  await page.getByTestId('verdict').filter({ hasText: 'Chain intact' }).waitFor({ timeout: WAIT });
  await page.getByLabel('or after event #').fill('1');
  await page.getByRole('button', { name: 'Show state' }).click();
  await sees(page, /^After event 1, as of/);
  await accessible(page, 'the audit console');
  await snap(page, 'audit-order-history');

  // someone edits a product event in SQL: the chain shows where
  psql(shop.database, `ALTER TABLE events DISABLE TRIGGER events_immutable;
    UPDATE events SET payload = jsonb_set(payload, '{forged}', 'true')
     WHERE aggregate_type = 'product' AND aggregate_id = 'MUG-01' AND sequence = 1;
    ALTER TABLE events ENABLE TRIGGER events_immutable;`);
  await page.getByLabel('Stream type').selectOption('product');
  await page.getByLabel('Stream id').fill('MUG-01');
  await page.getByRole('button', { name: 'Show history' }).click();
  await heading(page, /History \(\d+ events?\)/);
  await page.getByRole('button', { name: 'Verify chain' }).click();
  await page.getByTestId('verdict').filter({ hasText: 'Chain broken at event 1: content_altered' }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator('tr.broken').count(), 1, 'the broken event is marked in the history');
  await snap(page, 'audit-broken-chain');
  await page.context().close();
});

// A 2×2 PNG (red, green, blue, white pixels), valid enough to be decoded and thumbnailed.
const TINY_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mM4IScnt8CGQc7mxP///wEgjgYeGPy5WAAAAABJRU5ErkJggg==',
  'base64',
);

/** A REST command against the test's shop: the JSON body (with `position`), or throws. */
async function api(method, path, body, { token, headers = {}, raw } = {}) {
  const sent = { ...headers };
  if (token) sent.authorization = `Bearer ${token}`;
  if (body !== undefined && !raw) sent['content-type'] = 'application/json';
  const res = await fetch(`${shop.url}/api${path}`, {
    method,
    headers: sent,
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

async function graphql(query, variables, { token, position } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (position) headers['shop-position'] = position;
  const body = await (await fetch(`${shop.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) })).json();
  if (body.errors?.length) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

test('a product page shows images, variants, the rating summary and reviews; a customer picks a variant, reviews and votes', async () => {
  // seeded through the public APIs: staff create a T-shirt with a size option, two variants with
  // stock and an image; a customer buys one, gets it delivered and writes a verified review
  const staff = (await api('POST', '/auth/login', shop.accounts.staff)).access_token;
  await api('POST', '/products', {
    sku: 'TEE-01',
    name: 'Organic T-shirt',
    description: 'Heavy cotton, made to last.',
    category: 'home',
    price: { amount_minor: 2500, currency: 'EUR' },
  }, { token: staff });
  await api('PUT', '/products/TEE-01/options', { options: [{ name: 'Size', values: ['S', 'M'] }] }, { token: staff });
  await api('POST', '/products/TEE-01/variants', { sku: 'TEE-01-S', option_values: { Size: 'S' } }, { token: staff });
  await api('POST', '/products/TEE-01/variants', {
    sku: 'TEE-01-M',
    option_values: { Size: 'M' },
    price: { amount_minor: 2900, currency: 'EUR' },
  }, { token: staff });
  await api('POST', '/inventory/TEE-01-S/receive', { quantity: 5 }, { token: staff });
  await api('POST', '/inventory/TEE-01-M/receive', { quantity: 3 }, { token: staff });
  // the badge is proven by a delivered order with the reviewed SKU itself: an order of a variant
  // does not count for its parent's reviews (yet), so the reviewer buys the parent's own SKU
  await api('POST', '/inventory/TEE-01/receive', { quantity: 1 }, { token: staff });
  const image = await api('POST', `/products/TEE-01/images?alt=${encodeURIComponent('A folded blue T-shirt')}`, TINY_PNG, {
    token: staff,
    raw: true,
    headers: { 'content-type': 'image/png' },
  });
  assert.equal(image.content_type, 'image/png');

  const reviewer = await api('POST', '/auth/register', {
    email: `reviewer-${Date.now()}@example.com`,
    password: 'correct horse battery',
    name: 'Rita Reviewer',
  });
  const cart = await api('POST', '/carts', { currency: 'EUR' }, { token: reviewer.access_token });
  await api('POST', `/carts/${cart.cart_id}/items`, { sku: 'TEE-01', quantity: 1 }, { token: reviewer.access_token });
  const { order_id: reviewerOrder } = await api('POST', `/carts/${cart.cart_id}/checkout`, {
    shipping_address: { name: 'Rita Reviewer', line1: '2 Side Street', city: 'Hamburg', postal_code: '20095', country: 'DE' },
    payment_method: 'pm_card_visa',
  }, { token: reviewer.access_token });
  for (let i = 0; ; i++) {
    const { order } = await graphql('query($id: UUID!) { order(id: $id) { status } }', { id: reviewerOrder }, { token: reviewer.access_token });
    if (order?.status === 'CONFIRMED') break;
    assert.ok(i < 75, `the reviewer's order is ${order?.status}, not confirmed`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await api('POST', `/orders/${reviewerOrder}/ship`, { tracking: 'TEE-TRACK' }, { token: staff });
  await api('POST', `/orders/${reviewerOrder}/deliver`, undefined, { token: staff });
  const review = await api('POST', '/products/TEE-01/reviews', {
    rating: 4,
    title: 'Soft and warm',
    text: 'Washed it ten times, still in shape.',
  }, { token: reviewer.access_token });
  assert.equal(review.verified_purchase, true, 'the delivered order earns the badge');
  // read-your-writes: the page's first read comes after the review is in the read models
  const { product } = await graphql('query { product(sku: "TEE-01") { ratingSummary { count } } }', {}, { position: review.position });
  assert.equal(product.ratingSummary.count, 1);

  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${shop.url}/product/TEE-01`);
  await heading(page, 'Organic T-shirt');
  // the image, with the alt text staff gave it, really loaded (a thumbnail of the upload)
  const picture = page.getByRole('img', { name: 'A folded blue T-shirt' });
  await picture.waitFor({ state: 'visible', timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('img.main-image')?.naturalWidth > 0, null, { timeout: WAIT });
  // the first variant in stock is picked: M at its own price and stock
  assert.equal(await page.getByLabel('Size').inputValue(), 'M');
  await sees(page, '€29.00');
  assert.equal(await page.getByTestId('sku').textContent(), 'TEE-01-M');
  await sees(page, '3 in stock');
  // the summary and the verified review
  await sees(page, '4.0 out of 5');
  await sees(page, '(1 review)');
  await sees(page, '4 stars: 1');
  await sees(page, '5 stars: 0');
  const seeded = page.getByRole('article', { name: 'Soft and warm' });
  await seeded.getByText('Verified purchase').waitFor({ timeout: WAIT });
  await seeded.getByText('Washed it ten times, still in shape.').waitFor({ timeout: WAIT });
  assert.equal(await page.getByRole('button', { name: /^Helpful/ }).count(), 0, 'guests cannot vote');
  await sees(page, 'to write a review.');
  await accessible(page, 'the product page with variants and reviews');
  await snap(page, 'product-variants-reviews');

  // by keyboard: picking S shows its price, SKU and stock, and "Add to cart" adds S
  await page.getByLabel('Size').focus();
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.getByLabel('Size').inputValue(), 'S');
  await sees(page, '€25.00');
  assert.equal(await page.getByTestId('sku').textContent(), 'TEE-01-S');
  await sees(page, '5 in stock');
  await page.keyboard.press('Tab');
  assert.equal(await focusedName(page), 'Quantity');
  await page.keyboard.press('Tab');
  assert.equal(await focusedName(page), 'Add to cart');
  await page.keyboard.press('Enter');
  await sees(page, 'Added 1 × Organic T-shirt');
  await sees(page, 'Cart (1)');
  await snap(page, 'product-variant-added');
  await page.getByRole('link', { name: 'Cart (1)' }).click();
  await heading(page, 'Your cart');
  await sees(page, 'TEE-01-S');
  assert.equal(await page.getByText('TEE-01-M').count(), 0);
  await snap(page, 'cart-with-variant');

  // a signed-in customer votes for the review and writes one; it shows at once
  await page.getByRole('link', { name: 'Sign in' }).click();
  const signIn = page.getByRole('form', { name: 'Sign in' });
  await signIn.getByLabel('Email').fill(shopper.email);
  await signIn.getByLabel('Password').fill(shopper.password);
  await signIn.getByRole('button', { name: 'Sign in' }).click();
  await sees(page, `Signed in as ${shopper.email}`);
  await page.goto(`${shop.url}/product/TEE-01`);
  await heading(page, 'Organic T-shirt');
  await seeded.getByRole('button', { name: 'Helpful: Soft and warm' }).click();
  await seeded.getByText('1 person found this helpful').waitFor({ timeout: WAIT });

  const form = page.getByRole('form', { name: 'Write a review' });
  await form.getByLabel('Rating').selectOption('2');
  await form.getByLabel('Title').fill('Shrank a size');
  await form.getByLabel('Your review').fill('Nice colour, but it shrank in the wash.');
  await accessible(page, 'the review form');
  await snap(page, 'review-form-filled');
  await form.getByRole('button', { name: 'Post review' }).click();
  await sees(page, 'Thank you: your review is published.');
  const mine = page.getByRole('article', { name: 'Shrank a size' });
  await mine.getByText('Nice colour, but it shrank in the wash.').waitFor({ timeout: WAIT });
  assert.equal(await mine.getByText('Verified purchase').count(), 0, 'no delivered order, no badge');
  await sees(page, '3.0 out of 5');
  await sees(page, '(2 reviews)');
  await sees(page, '2 stars: 1');
  await snap(page, 'review-posted');

  // a second review of the same product: the problem's detail is shown by the form
  await form.getByLabel('Title').fill('Again');
  await form.getByRole('button', { name: 'Post review' }).click();
  await form.getByRole('alert').filter({ hasText: 'already reviewed' }).waitFor({ timeout: WAIT });
  await accessible(page, 'the review form with an error');
  await snap(page, 'review-already-reviewed');

  // a product without images shows a placeholder
  await page.goto(`${shop.url}/product/HP-100`);
  await heading(page, 'Studio headphones');
  await page.getByRole('img', { name: 'No image of Studio headphones' }).waitFor({ timeout: WAIT });
  await sees(page, 'No reviews yet.');
  await snap(page, 'product-placeholder');
  await page.context().close();
});

import { useEffect, useState } from 'preact/hooks';
import { gql, money } from '../api.js';
import { Link, navigate, useLocation } from '../router.jsx';

const BANDS = {
  UNDER_10: 'Under €10',
  FROM_10_TO_25: '€10 – €25',
  FROM_25_TO_50: '€25 – €50',
  FROM_50_TO_100: '€50 – €100',
  FROM_100_TO_250: '€100 – €250',
  FROM_250: '€250 and more',
};

const PRODUCTS = `query Products($query: String, $filter: ProductFilter, $sort: ProductSort) {
  products(first: 48, query: $query, filter: $filter, sort: $sort) {
    totalCount
    facets {
      categories { category count }
      priceBands { band minMinor maxMinor count }
      inStock outOfStock
    }
    edges { node { sku name category price { amountMinor currency } inStock } }
  }
}`;

function href(params, changes) {
  const next = new URLSearchParams(params);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === '') next.delete(key);
    else next.set(key, value);
  }
  const text = next.toString();
  return text ? `/?${text}` : '/';
}

export function Catalog() {
  const { params } = useLocation();
  const q = params.get('q') || '';
  const category = params.get('category') || '';
  const band = params.get('price') || '';
  const inStock = params.get('stock') === 'in';
  const sort = params.get('sort') || (q ? 'RELEVANCE' : 'NEWEST');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        // the bands' bounds come from the facets of the unfiltered answer
        const filter = {};
        if (category) filter.category = category;
        if (inStock) filter.inStock = true;
        if (band) {
          const [min, max] = band.split('-');
          if (min) filter.priceMin = Number(min);
          if (max) filter.priceMax = Number(max) - 1;
        }
        const data = await gql(PRODUCTS, { query: q || null, filter, sort });
        if (live) {
          setResult(data.products);
          setError(null);
        }
      } catch (e) {
        if (live) setError(e.message);
      }
    })();
    return () => {
      live = false;
    };
  }, [q, category, band, inStock, sort]);

  const heading = q ? `Results for “${q}”` : category ? `Category: ${category}` : 'All products';
  return (
    <div class="catalog">
      <aside class="facets" aria-label="Filters">
        {result && (
          <>
            <h2>Category</h2>
            <ul>
              <li>
                <Link href={href(params, { category: null })} aria-current={!category ? 'true' : undefined}>
                  All categories
                </Link>
              </li>
              {result.facets.categories.map((c) => (
                <li key={c.category}>
                  <Link href={href(params, { category: c.category })} aria-current={category === c.category ? 'true' : undefined}>
                    {c.category} <span class="count">({c.count})</span>
                  </Link>
                </li>
              ))}
            </ul>
            <h2>Price</h2>
            <ul>
              {band && (
                <li>
                  <Link href={href(params, { price: null })}>Any price</Link>
                </li>
              )}
              {result.facets.priceBands.filter((b) => b.count > 0).map((b) => {
                const value = `${b.minMinor ?? ''}-${b.maxMinor ?? ''}`;
                return (
                  <li key={b.band}>
                    <Link href={href(params, { price: value })} aria-current={band === value ? 'true' : undefined}>
                      {BANDS[b.band] || b.band} <span class="count">({b.count})</span>
                    </Link>
                  </li>
                );
              })}
            </ul>
            <h2>Availability</h2>
            <label class="check">
              <input
                type="checkbox"
                checked={inStock}
                onChange={(e) => navigate(href(params, { stock: e.currentTarget.checked ? 'in' : null }))}
              />
              In stock only ({result.facets.inStock})
            </label>
          </>
        )}
      </aside>
      <section class="results" aria-labelledby="results-heading">
        <div class="results-head">
          <h1 id="results-heading">{heading}</h1>
          <label>
            Sort by{' '}
            <select value={sort} onChange={(e) => navigate(href(params, { sort: e.currentTarget.value }))}>
              <option value="RELEVANCE">Relevance</option>
              <option value="NEWEST">Newest</option>
              <option value="PRICE_ASC">Price, low to high</option>
              <option value="PRICE_DESC">Price, high to low</option>
            </select>
          </label>
        </div>
        {error && <p role="alert" class="error">{error}</p>}
        {result && (
          <p class="total" aria-live="polite">
            {result.totalCount === 1 ? '1 product' : `${result.totalCount} products`}
          </p>
        )}
        {result && result.totalCount === 0 && <p>Nothing matches. Try another word or fewer filters.</p>}
        <ul class="grid">
          {result?.edges.map(({ node }) => (
            <li key={node.sku} class="card">
              <Link href={`/product/${encodeURIComponent(node.sku)}`}>
                <span class="card-name">{node.name}</span>
              </Link>
              <span class="card-category">{node.category}</span>
              <span class="card-price">{money(node.price)}</span>
              <span class={node.inStock ? 'badge ok' : 'badge out'}>{node.inStock ? 'In stock' : 'Out of stock'}</span>
            </li>
          ))}
        </ul>
      </section>
    </div>
  );
}

// A product: its images, the variant picker (one select per option), the rating summary and the
// reviews, with a "helpful" vote and a review form for signed-in customers.
import { useEffect, useState } from 'preact/hooks';
import { command, gql, money, when } from '../api.js';
import { Link } from '../router.jsx';
import { addToCart, shopper } from './cart.js';

const PRODUCT = `query Product($sku: String!) {
  product(sku: $sku) {
    sku name category description price { amountMinor currency } available inStock discontinued variantOf
    images { id alt width height large: thumbnailUrl(width: 768) small: thumbnailUrl(width: 96) }
    options { name values }
    variants { sku name price { amountMinor currency } available inStock discontinued optionValues { name value } }
    ratingSummary { average count histogram { stars count } }
    reviews(first: 20) {
      totalCount
      edges { node { id rating title text verifiedPurchase helpfulCount writtenAt } }
    }
  }
}`;

const CRUMBS = `query Crumbs($slug: String!) { category(slug: $slug) { breadcrumbs { slug name } } }`;

function valuesOf(variant) {
  return Object.fromEntries(variant.optionValues.map((v) => [v.name, v.value]));
}

function firstChoice(product) {
  if (!product.options.length) return {};
  const variant = product.variants.find((v) => v.inStock && !v.discontinued) || product.variants[0];
  if (variant) return valuesOf(variant);
  return Object.fromEntries(product.options.map((o) => [o.name, o.values[0]]));
}

function stars(rating) {
  return '★'.repeat(rating) + '☆'.repeat(5 - rating);
}

function Gallery({ product }) {
  const [shown, setShown] = useState(0);
  const images = product.images;
  if (!images.length) {
    return (
      <div class="gallery">
        <div class="placeholder" role="img" aria-label={`No image of ${product.name}`}>No image</div>
      </div>
    );
  }
  const main = images[Math.min(shown, images.length - 1)];
  return (
    <div class="gallery">
      <img class="main-image" src={main.large} alt={main.alt || product.name} width={main.width} height={main.height} />
      {images.length > 1 && (
        <ul class="thumbs" aria-label="Images">
          {images.map((image, i) => (
            <li key={image.id}>
              <button
                type="button"
                class="thumb"
                aria-pressed={i === shown}
                aria-label={`Show image ${i + 1}${image.alt ? `: ${image.alt}` : ''}`}
                onClick={() => setShown(i)}
              >
                <img src={image.small} alt="" width="96" />
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function RatingSummary({ summary }) {
  if (!summary.count) return <p>No reviews yet.</p>;
  const bars = [...summary.histogram].sort((a, b) => b.stars - a.stars);
  return (
    <div class="rating-summary">
      <p data-testid="rating-average">
        <strong>{summary.average.toFixed(1)} out of 5</strong> ({summary.count} {summary.count === 1 ? 'review' : 'reviews'})
      </p>
      <ul class="histogram" aria-label="Reviews by stars">
        {bars.map((bar) => (
          <li key={bar.stars}>
            <span class="bar-label">{bar.stars} {bar.stars === 1 ? 'star' : 'stars'}: {bar.count}</span>
            <span class="bar" aria-hidden="true">
              <span class="bar-fill" style={{ width: `${(100 * bar.count) / summary.count}%` }} />
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}

function Review({ review, signedIn, onChanged }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const vote = async () => {
    setBusy(true);
    setError(null);
    try {
      const written = await command('POST', `/reviews/${encodeURIComponent(review.id)}/helpful`, undefined, { session: shopper });
      await onChanged(written.position);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="review">
      <article aria-labelledby={`review-${review.id}`}>
        <h3 id={`review-${review.id}`}>{review.title}</h3>
        <p>
          <span class="stars" aria-hidden="true">{stars(review.rating)}</span>{' '}
          <span class="visually-hidden">{review.rating} out of 5 stars</span>
          {review.verifiedPurchase && <span class="badge ok">Verified purchase</span>}
          {' '}<time class="count" dateTime={review.writtenAt}>{when(review.writtenAt)}</time>
        </p>
        {review.text && <p>{review.text}</p>}
        <p class="count">
          {review.helpfulCount} {review.helpfulCount === 1 ? 'person' : 'people'} found this helpful
          {signedIn && (
            <>
              {' '}
              <button type="button" class="secondary" disabled={busy} onClick={vote} aria-label={`Helpful: ${review.title}`}>
                Helpful
              </button>
            </>
          )}
        </p>
        {error && <p role="alert" class="error">{error}</p>}
      </article>
    </li>
  );
}

function ReviewForm({ sku, onWritten }) {
  const [rating, setRating] = useState('5');
  const [title, setTitle] = useState('');
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const [message, setMessage] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      const written = await command('POST', `/products/${encodeURIComponent(sku)}/reviews`, {
        rating: Number(rating),
        title,
        text,
      }, { session: shopper });
      await onWritten(written.position);
      setTitle('');
      setText('');
      setMessage(written.verified_purchase ? 'Thank you: your review is published as a verified purchase.' : 'Thank you: your review is published.');
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="stack" aria-label="Write a review" onSubmit={submit}>
      <h3>Write a review</h3>
      <label>
        Rating
        <select value={rating} onChange={(e) => setRating(e.currentTarget.value)}>
          {[5, 4, 3, 2, 1].map((n) => (
            <option key={n} value={String(n)}>{n} {n === 1 ? 'star' : 'stars'}</option>
          ))}
        </select>
      </label>
      <label>
        Title
        <input value={title} maxLength={120} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label>
        Your review
        <textarea rows={4} value={text} maxLength={5000} onInput={(e) => setText(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>Post review</button>
      <div aria-live="polite">
        {message && <p class="notice">{message}</p>}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
    </form>
  );
}

export function Product({ sku }) {
  const [product, setProduct] = useState(undefined);
  const [crumbs, setCrumbs] = useState(null);
  const [choice, setChoice] = useState({});
  const [quantity, setQuantity] = useState(1);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [session, setSession] = useState(shopper.get());
  useEffect(() => shopper.subscribe(setSession), []);

  const load = async (position) => {
    const data = await gql(PRODUCT, { sku }, { position, session: shopper });
    setProduct(data.product);
    return data.product;
  };

  useEffect(() => {
    setProduct(undefined);
    setCrumbs(null);
    load().then(
      (loaded) => {
        if (!loaded) return;
        setChoice(firstChoice(loaded));
        gql(CRUMBS, { slug: loaded.category }).then((data) => setCrumbs(data.category?.breadcrumbs || null), () => {});
      },
      (e) => setError(e.message),
    );
  }, [sku]);

  if (error && product === undefined) return <p role="alert" class="error">{error}</p>;
  if (product === undefined) return <p>Loading…</p>;
  if (product === null) return <h1>No product {sku}</h1>;

  const hasVariants = product.options.length > 0;
  const selected = hasVariants
    ? product.variants.find((v) => product.options.every((o) => valuesOf(v)[o.name] === choice[o.name])) || null
    : product;
  const signedIn = Boolean(session?.access_token);

  const add = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      await addToCart(selected.sku, Number(quantity));
      setMessage(`Added ${quantity} × ${selected.name} to your cart.`);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const orderable = selected && selected.inStock && !selected.discontinued;
  const reviews = product.reviews.edges.map((edge) => edge.node);
  return (
    <article class="product">
      <nav aria-label="Breadcrumbs" class="crumbs">
        <Link href="/">All products</Link>
        {(crumbs || [{ slug: product.category, name: product.category }]).map((crumb) => (
          <span key={crumb.slug}>
            {' › '}
            <Link href={`/?category=${encodeURIComponent(crumb.slug)}`}>{crumb.name}</Link>
          </span>
        ))}
      </nav>
      <h1>{product.name}</h1>
      {product.variantOf && (
        <p>
          A variant of <Link href={`/product/${encodeURIComponent(product.variantOf)}`}>{product.variantOf}</Link>
        </p>
      )}
      <div class="product-top">
        <Gallery product={product} />
        <div class="buy">
          {hasVariants && (
            <fieldset class="variants">
              <legend>Choose a variant</legend>
              {product.options.map((option) => (
                <label key={option.name}>
                  {option.name}
                  <select
                    value={choice[option.name]}
                    onChange={(e) => {
                      setMessage(null);
                      setChoice({ ...choice, [option.name]: e.currentTarget.value });
                    }}
                  >
                    {option.values.map((value) => (
                      <option key={value} value={value}>{value}</option>
                    ))}
                  </select>
                </label>
              ))}
            </fieldset>
          )}
          <div aria-live="polite" data-testid="selection">
            {selected ? (
              <>
                <p class="price" data-testid="price">{money(selected.price)}</p>
                <p class="sku">SKU <span data-testid="sku">{selected.sku}</span></p>
                <p class={orderable ? 'badge ok' : 'badge out'}>
                  {selected.discontinued ? 'No longer sold' : selected.inStock ? `${selected.available} in stock` : 'Out of stock'}
                </p>
              </>
            ) : (
              <p class="badge out">This combination is not available</p>
            )}
          </div>
          {orderable && (
            <form onSubmit={add} class="add">
              <label>
                Quantity
                <input
                  type="number"
                  min="1"
                  max={selected.available}
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
        </div>
      </div>
      <p>{product.description}</p>

      <section aria-labelledby="reviews-heading" class="reviews">
        <h2 id="reviews-heading">Reviews</h2>
        <RatingSummary summary={product.ratingSummary} />
        {reviews.length > 0 && (
          <ul class="review-list">
            {reviews.map((review) => (
              <Review key={review.id} review={review} signedIn={signedIn} onChanged={load} />
            ))}
          </ul>
        )}
        {signedIn ? (
          <ReviewForm sku={product.sku} onWritten={load} />
        ) : (
          <p><Link href="/account">Sign in</Link> to write a review.</p>
        )}
      </section>
    </article>
  );
}

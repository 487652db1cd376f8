import { useEffect, useState } from 'preact/hooks';
import { gql, money, statusWords, when } from '../api.js';
import { Link, navigate } from '../router.jsx';
import { shopper, signIn, signOut } from './cart.js';

const MY_ORDERS = `query Mine { me { id email role orders(first: 50) { totalCount edges { node { id number status placedAt totals { total { amountMinor currency } } } } } } }`;

function SignInForm({ mode }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const register = mode === 'register';
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(register ? 'register' : 'login', register ? { email, password, name } : { email, password });
      navigate('/account');
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const id = register ? 'register' : 'login';
  return (
    <form onSubmit={submit} class="stack" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>{register ? 'Create an account' : 'Sign in'}</h2>
      {register && (
        <label>
          Name
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} autocomplete="name" required />
        </label>
      )}
      <label>
        Email
        <input type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} autocomplete="email" required />
      </label>
      <label>
        Password{register ? ' (at least 10 characters)' : ''}
        <input
          type="password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
          autocomplete={register ? 'new-password' : 'current-password'}
          minlength={register ? 10 : undefined}
          required
        />
      </label>
      {error && <p role="alert" class="error">{error}</p>}
      <button type="submit" disabled={busy}>{register ? 'Create account' : 'Sign in'}</button>
    </form>
  );
}

export function Account() {
  const [session, setSession] = useState(shopper.get());
  const [me, setMe] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => shopper.subscribe(setSession), []);
  useEffect(() => {
    if (!session) return;
    gql(MY_ORDERS, {}, { session: shopper }).then((data) => setMe(data.me), (e) => setError(e.message));
  }, [session]);

  if (!session) {
    return (
      <section aria-label="Your account">
        <h1>Your account</h1>
        <p>Sign in to see your orders. Your cart comes with you.</p>
        <div class="two">
          <SignInForm mode="login" />
          <SignInForm mode="register" />
        </div>
      </section>
    );
  }
  return (
    <section aria-labelledby="account-heading">
      <h1 id="account-heading">Your account</h1>
      <p>
        Signed in as <strong>{me?.email || session.email}</strong>{' '}
        <button type="button" class="secondary" onClick={() => signOut()}>Sign out</button>
      </p>
      <h2>Order history</h2>
      {error && <p role="alert" class="error">{error}</p>}
      {me && me.orders.totalCount === 0 && <p>No orders yet.</p>}
      {me && me.orders.totalCount > 0 && (
        <table>
          <caption class="visually-hidden">Your orders, newest first</caption>
          <thead>
            <tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Status</th><th scope="col">Total</th></tr>
          </thead>
          <tbody>
            {me.orders.edges.map(({ node }) => (
              <tr key={node.id}>
                <td><Link href={`/orders/${node.id}`}>#{node.number}</Link></td>
                <td>{when(node.placedAt)}</td>
                <td>{statusWords[node.status] || node.status}</td>
                <td>{money(node.totals.total)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

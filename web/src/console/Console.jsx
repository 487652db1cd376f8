import { useEffect, useState } from 'preact/hooks';
import { command, Session } from '../api.js';
import { Link, useLocation } from '../router.jsx';
import { Products } from './Products.jsx';
import { Stock } from './Stock.jsx';
import { Orders } from './Orders.jsx';
import { Sales } from './Sales.jsx';
import { Audit } from './Audit.jsx';
import { ReadModels } from './ReadModels.jsx';

export const staff = new Session('shop.console.session');

const SECTIONS = [
  ['products', 'Products', ['staff'], Products],
  ['stock', 'Stock', ['staff'], Stock],
  ['orders', 'Orders', ['staff'], Orders],
  ['sales', 'Sales', ['staff'], Sales],
  ['audit', 'Audit', ['auditor'], Audit],
  ['read-models', 'Read models', ['staff'], ReadModels],
];

function SignIn() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const session = await command('POST', '/auth/login', { email, password });
      if (session.role === 'customer') {
        setError('This console is for staff and auditors.');
        return;
      }
      staff.set({ ...session, email });
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <form class="stack" onSubmit={submit} aria-labelledby="console-signin">
      <h1 id="console-signin">Console sign-in</h1>
      <label>
        Email
        <input type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} autocomplete="username" required />
      </label>
      <label>
        Password
        <input type="password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} autocomplete="current-password" required />
      </label>
      {error && <p role="alert" class="error">{error}</p>}
      <button type="submit">Sign in</button>
    </form>
  );
}

export function Console() {
  const { path } = useLocation();
  const [session, setSession] = useState(staff.get());
  useEffect(() => staff.subscribe(setSession), []);
  document.title = 'shop console';

  const allowed = session ? SECTIONS.filter(([, , roles]) => roles.includes(session.role)) : [];
  const current = path.split('/')[2] || allowed[0]?.[0];
  const section = allowed.find(([slug]) => slug === current);
  const Section = section?.[3];
  const signOut = async () => {
    const refresh = session?.refresh_token;
    if (refresh) await command('POST', '/auth/logout', { refresh_token: refresh }).catch(() => {});
    staff.set(null);
  };
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <Link href="/console" class="brand">shop console</Link>
        {session && (
          <nav aria-label="Console" class="console-nav">
            {allowed.map(([slug, label]) => (
              <Link key={slug} href={`/console/${slug}`} aria-current={slug === current ? 'page' : undefined}>
                {label}
              </Link>
            ))}
          </nav>
        )}
        {session && (
          <p>
            {session.email} ({session.role}){' '}
            <button type="button" class="secondary" onClick={signOut}>Sign out</button>
          </p>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {!session && <SignIn />}
        {session && Section && <Section />}
        {session && !Section && <p>Nothing here for the {session.role} role.</p>}
      </main>
      <footer>
        <Link href="/">Storefront</Link>
      </footer>
    </>
  );
}
